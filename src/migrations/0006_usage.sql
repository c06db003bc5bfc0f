-- Monthly usage counters, sharded: each ingest adds to one of 16 rows of its workspace and month
-- (chosen at random), so concurrent ingests in one workspace rarely wait on the same row lock,
-- and the quota check sums 16 rows instead of counting the month's events.
CREATE TABLE usage_counters (
  workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  metric        text NOT NULL,
  period        date NOT NULL,
  shard         smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
  count         bigint NOT NULL,
  PRIMARY KEY (workspace_id, metric, period, shard)
);

ALTER TABLE usage_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON usage_counters USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
GRANT SELECT, INSERT, UPDATE ON usage_counters TO ${app_role};
