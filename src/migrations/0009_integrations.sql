-- Tenant code: rule transforms, integration templates deployed as per-workspace instances, and
-- the executions that record every run of either, step by step.

-- A rule's transform is kept as immutable revisions: an execution queued at ingest runs the
-- revision that was current then, so a rule change affects only later events.
ALTER TABLE rules ADD COLUMN transform_revision integer;
CREATE TABLE rule_transforms (
  workspace_id  text NOT NULL,
  rule_id       text NOT NULL,
  revision      integer NOT NULL,
  language      text NOT NULL CHECK (language IN ('javascript', 'typescript')),
  source        text NOT NULL,
  -- The JavaScript actually run (TypeScript types stripped at save time).
  compiled      text NOT NULL,
  created_at    timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, rule_id, revision),
  FOREIGN KEY (workspace_id, rule_id) REFERENCES rules (workspace_id, id) ON DELETE CASCADE
);

-- Templates are platform-level (written by the platform admin, read by every workspace's
-- instances); a published version is never changed.
CREATE TABLE integrations (
  id           text PRIMARY KEY,
  name         text NOT NULL UNIQUE,
  description  text,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL
);
CREATE TABLE integration_versions (
  integration_id  text NOT NULL REFERENCES integrations (id) ON DELETE RESTRICT,
  version         text NOT NULL,
  document        jsonb NOT NULL,
  -- Step name -> the JavaScript run for that transform step (types stripped at publish).
  compiled        jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL,
  PRIMARY KEY (integration_id, version)
);

CREATE TABLE instances (
  workspace_id      text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id                text NOT NULL,
  name              text NOT NULL,
  integration_id    text NOT NULL,
  version           text NOT NULL,
  enabled           boolean NOT NULL DEFAULT true,
  -- Non-secret config values (validated against the version's config schema).
  config            jsonb NOT NULL DEFAULT '{}',
  -- Secret config values: sealed JSON object (table instances, row = id, column secret_config).
  secret_config     bytea,
  secret_names      text[] NOT NULL DEFAULT '{}',
  -- Slot name -> bound id in this workspace.
  connections       jsonb NOT NULL DEFAULT '{}',
  destinations      jsonb NOT NULL DEFAULT '{}',
  inbound_sources   jsonb NOT NULL DEFAULT '{}',
  -- Routing, denormalised from the version's triggers at create/upgrade: ingest reads only these.
  event_patterns    text[] NOT NULL DEFAULT '{}',
  inbound_triggers  jsonb NOT NULL DEFAULT '[]',
  -- Step payloads are recorded (sealed) only when the instance asks for it.
  log_payloads      boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, name)
  -- (integration_id, version) names a published version. Not a foreign key: keys of workspace
  -- tables include workspace_id, and versions are never deleted, so none is needed.
);

-- One row per cron trigger of an enabled instance. The scheduler finds due rows across
-- workspaces (a named exception: ids and times only) and locks each row while it fires it.
CREATE TABLE instance_schedules (
  workspace_id   text NOT NULL,
  instance_id    text NOT NULL,
  trigger_index  integer NOT NULL,
  schedule       text NOT NULL,
  timezone       text NOT NULL,
  last_fired_at  timestamptz,
  next_fire_at   timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, instance_id, trigger_index),
  FOREIGN KEY (workspace_id, instance_id) REFERENCES instances (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX instance_schedules_due ON instance_schedules (next_fire_at);

CREATE TABLE executions (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id             text NOT NULL,
  kind           text NOT NULL CHECK (kind IN ('rule', 'instance')),
  rule_id        text,
  rule_revision  integer,
  instance_id    text,
  trigger        text NOT NULL CHECK (trigger IN ('event', 'inbound', 'cron', 'retry')),
  event_id       text,
  -- The cron slot this execution fires; unique per instance, so a slot fires at most once
  -- whatever the number of schedulers.
  scheduled_for  timestamptz,
  trigger_index  integer,
  status         text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  attempts       integer NOT NULL DEFAULT 0,
  lease_owner    text,
  lease_until    timestamptz,
  -- Where a retry resumes: the step index, and the items entering it (sealed, column resume_state).
  resume_step    integer NOT NULL DEFAULT 0,
  resume_state   bytea,
  retry_of       text,
  steps          jsonb NOT NULL DEFAULT '[]',
  error          jsonb,
  -- Step payloads, sealed (column payloads), only when the instance enables payload logging.
  payloads       bytea,
  created_at     timestamptz NOT NULL,
  started_at     timestamptz,
  finished_at    timestamptz,
  PRIMARY KEY (workspace_id, id)
);
-- The runner finds queued work across workspaces (a named exception, see src/executions/claim.ts):
-- workspaces with queued work by a skip scan of this index, then each one's oldest.
CREATE INDEX executions_queued ON executions (workspace_id, created_at) WHERE status = 'queued';
CREATE INDEX executions_leased ON executions (lease_until) WHERE status = 'running';
CREATE INDEX executions_by_rule ON executions (workspace_id, rule_id, id) WHERE rule_id IS NOT NULL;
CREATE INDEX executions_by_instance ON executions (workspace_id, instance_id, id) WHERE instance_id IS NOT NULL;
CREATE INDEX executions_finished ON executions (workspace_id, finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX executions_cron_slot ON executions (workspace_id, instance_id, trigger_index, scheduled_for) WHERE scheduled_for IS NOT NULL;

-- Deliveries made by an execution (a transform's output, a deliver step) carry their own
-- payload and type, and may have no event (a cron run). Re-running an execution after a crash
-- writes the same (execution, destination, part) rows, which the unique index turns into no-ops.
ALTER TABLE deliveries ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE deliveries ALTER COLUMN rule_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN execution_id text;
ALTER TABLE deliveries ADD COLUMN part integer;
ALTER TABLE deliveries ADD COLUMN event_type text;
-- Sealed (table deliveries, row = id, column payload).
ALTER TABLE deliveries ADD COLUMN payload bytea;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_workspace_id_event_id_destination_id_key;
CREATE UNIQUE INDEX deliveries_event_destination ON deliveries (workspace_id, event_id, destination_id) WHERE execution_id IS NULL;
CREATE UNIQUE INDEX deliveries_execution_part ON deliveries (workspace_id, execution_id, destination_id, part) WHERE execution_id IS NOT NULL;
GRANT UPDATE (payload) ON deliveries TO ${app_role};

ALTER TABLE rule_transforms ENABLE ROW LEVEL SECURITY;
ALTER TABLE rule_transforms FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON rule_transforms USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE instances FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON instances USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE instance_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE instance_schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON instance_schedules USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE executions FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON executions USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());

GRANT SELECT, INSERT ON rule_transforms TO ${app_role};
-- Templates are the platform's: workspaces read them, only the owner writes them.
GRANT SELECT ON integrations, integration_versions TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON instances TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON instance_schedules TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON executions TO ${app_role};
