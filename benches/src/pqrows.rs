//! `pqrows DIR`: counts the rows and files of every Parquet file under DIR
//! (reading each file's footer), so the parquet bench can check that what
//! the collector accepted is on disk.

use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: pqrows DIR");
    let mut files = Vec::new();
    walk(Path::new(&dir), &mut files);
    let (mut rows, mut bytes) = (0i64, 0u64);
    for f in &files {
        let r = SerializedFileReader::new(std::fs::File::open(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: not a readable parquet file: {e}", f.display()));
        rows += r.metadata().file_metadata().num_rows();
        bytes += std::fs::metadata(f).unwrap().len();
    }
    println!("rows={rows} files={} bytes={bytes}", files.len());
}
