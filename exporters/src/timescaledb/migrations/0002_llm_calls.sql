-- One row per GenAI span (a model call). Token counts cannot be negative
-- and the cost must be a real number: a row that breaks that is refused
-- by the database, counted, and skipped without losing the rest.
CREATE TABLE IF NOT EXISTS {schema}.llm_calls (
    time          timestamptz      NOT NULL,
    trace_id      text             NOT NULL,
    span_id       text             NOT NULL,
    service       text,
    provider      text,
    model         text,
    operation     text,
    input_tokens  bigint           CHECK (input_tokens >= 0),
    output_tokens bigint           CHECK (output_tokens >= 0),
    cost_usd      double precision CHECK (cost_usd >= 0 AND cost_usd <> 'NaN'::float8 AND cost_usd <> 'Infinity'::float8),
    duration_ms   double precision NOT NULL,
    status        text             NOT NULL
);

CREATE INDEX IF NOT EXISTS llm_calls_service_model_time ON {schema}.llm_calls (service, model, time DESC);
CREATE INDEX IF NOT EXISTS llm_calls_trace ON {schema}.llm_calls (trace_id);
