-- Metric data points, one table per OTLP point type. {schema} is replaced
-- by the exporter's `schema`. Attributes are jsonb; exemplars keep their
-- trace ids (hex) so a point links to its traces.
CREATE TABLE IF NOT EXISTS {schema}.metric_gauge (
    time               timestamptz      NOT NULL,
    start_time         timestamptz,
    metric             text             NOT NULL,
    unit               text             NOT NULL,
    service            text,
    resource           jsonb            NOT NULL,
    scope              jsonb            NOT NULL,
    attributes         jsonb            NOT NULL,
    flags              integer          NOT NULL,
    value              double precision,
    exemplar_trace_ids text[]           NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.metric_sum (
    time               timestamptz      NOT NULL,
    start_time         timestamptz,
    metric             text             NOT NULL,
    unit               text             NOT NULL,
    service            text,
    resource           jsonb            NOT NULL,
    scope              jsonb            NOT NULL,
    attributes         jsonb            NOT NULL,
    flags              integer          NOT NULL,
    value              double precision,
    is_monotonic       boolean          NOT NULL,
    temporality        smallint         NOT NULL,
    exemplar_trace_ids text[]           NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.metric_histogram (
    time               timestamptz      NOT NULL,
    start_time         timestamptz,
    metric             text             NOT NULL,
    unit               text             NOT NULL,
    service            text,
    resource           jsonb            NOT NULL,
    scope              jsonb            NOT NULL,
    attributes         jsonb            NOT NULL,
    flags              integer          NOT NULL,
    count              bigint           NOT NULL,
    sum                double precision,
    min                double precision,
    max                double precision,
    bucket_counts      bigint[]         NOT NULL,
    explicit_bounds    double precision[] NOT NULL,
    temporality        smallint         NOT NULL,
    exemplar_trace_ids text[]           NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.metric_exp_histogram (
    time                   timestamptz      NOT NULL,
    start_time             timestamptz,
    metric                 text             NOT NULL,
    unit                   text             NOT NULL,
    service                text,
    resource               jsonb            NOT NULL,
    scope                  jsonb            NOT NULL,
    attributes             jsonb            NOT NULL,
    flags                  integer          NOT NULL,
    count                  bigint           NOT NULL,
    sum                    double precision,
    min                    double precision,
    max                    double precision,
    scale                  integer          NOT NULL,
    zero_count             bigint           NOT NULL,
    zero_threshold         double precision NOT NULL,
    positive_offset        integer          NOT NULL,
    positive_bucket_counts bigint[]         NOT NULL,
    negative_offset        integer          NOT NULL,
    negative_bucket_counts bigint[]         NOT NULL,
    temporality            smallint         NOT NULL,
    exemplar_trace_ids     text[]           NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.metric_summary (
    time               timestamptz      NOT NULL,
    start_time         timestamptz,
    metric             text             NOT NULL,
    unit               text             NOT NULL,
    service            text,
    resource           jsonb            NOT NULL,
    scope              jsonb            NOT NULL,
    attributes         jsonb            NOT NULL,
    flags              integer          NOT NULL,
    count              bigint           NOT NULL,
    sum                double precision NOT NULL,
    quantiles          double precision[] NOT NULL,
    quantile_values    double precision[] NOT NULL
);

CREATE INDEX IF NOT EXISTS metric_gauge_metric_time ON {schema}.metric_gauge (metric, time DESC);
CREATE INDEX IF NOT EXISTS metric_sum_metric_time ON {schema}.metric_sum (metric, time DESC);
CREATE INDEX IF NOT EXISTS metric_histogram_metric_time ON {schema}.metric_histogram (metric, time DESC);
CREATE INDEX IF NOT EXISTS metric_exp_histogram_metric_time ON {schema}.metric_exp_histogram (metric, time DESC);
CREATE INDEX IF NOT EXISTS metric_summary_metric_time ON {schema}.metric_summary (metric, time DESC);
