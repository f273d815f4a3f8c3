-- Checkpoint tables of vicidial-archiver, created in the VICIdial database by the tool itself
-- (and by `vicidial-archiver schema init`). InnoDB always: on an InnoDB VICIdial the chunk's
-- checkpoint rows commit in the same transaction as the chunk; on MyISAM they are a resume hint.

CREATE TABLE IF NOT EXISTS archiver_jobs (
  job_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  job_name VARCHAR(64) NULL,
  direction ENUM('archive','dearchive') NOT NULL,
  identity_hash CHAR(64) NOT NULL,
  identity_json TEXT NOT NULL,
  params_json TEXT NOT NULL,
  -- Explicit ids of jobs made by earlier versions (JSON); jobs now stage them in archiver_job_ids.
  ids_json LONGTEXT NULL,
  state ENUM('running','stopped','done','failed','cancelled') NOT NULL,
  cursor_lead_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  counts_json TEXT NOT NULL,
  chunks INT UNSIGNED NOT NULL DEFAULT 0,
  runs INT UNSIGNED NOT NULL DEFAULT 1,
  host VARCHAR(255) NOT NULL DEFAULT '',
  pid INT UNSIGNED NOT NULL DEFAULT 0,
  connection_id BIGINT UNSIGNED NULL,
  heartbeat DATETIME(3) NULL,
  started_at DATETIME(3) NOT NULL,
  ended_at DATETIME(3) NULL,
  active_ms BIGINT UNSIGNED NOT NULL DEFAULT 0,
  stop_reason VARCHAR(255) NULL,
  tool_version VARCHAR(32) NOT NULL,
  PRIMARY KEY (job_id),
  KEY job_name (job_name),
  KEY identity_hash (identity_hash),
  KEY state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS archiver_chunks (
  job_id BIGINT UNSIGNED NOT NULL,
  chunk_no INT UNSIGNED NOT NULL,
  first_lead_id INT UNSIGNED NOT NULL,
  last_lead_id INT UNSIGNED NOT NULL,
  cursor_lead_id BIGINT UNSIGNED NOT NULL,
  leads INT UNSIGNED NOT NULL,
  counts_json TEXT NOT NULL,
  ms INT UNSIGNED NOT NULL,
  done_at DATETIME(3) NOT NULL,
  PRIMARY KEY (job_id, chunk_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS archiver_leads (
  job_id BIGINT UNSIGNED NOT NULL,
  lead_id INT UNSIGNED NOT NULL,
  outcome VARCHAR(20) NOT NULL,
  chunk_no INT UNSIGNED NOT NULL,
  PRIMARY KEY (job_id, lead_id),
  KEY outcome (job_id, outcome)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Leads of the chunk in progress that were in the source table when it began. A MyISAM chunk
-- killed part-way is redone from the two tables; these rows let the redo count a lead it finds
-- already moved as moved by this job, not as found that way. copy_hash: SHA-256 of the copy
-- about to be written (every column's bytes), recorded before it is written, so the job can
-- prove a copy is its own (a lead that left the selection; a restored lead the dialer changed).
-- prev_hash: the fingerprint it replaced, when a redo was cut before its new copy was written.
-- tables_at: the two tables' CREATE_TIME then (an ALTER rebuilds a MyISAM table and changes it).
CREATE TABLE IF NOT EXISTS archiver_pending (
  job_id BIGINT UNSIGNED NOT NULL,
  lead_id INT UNSIGNED NOT NULL,
  copy_hash CHAR(64) NULL,
  prev_hash CHAR(64) NULL,
  tables_at VARCHAR(64) NULL,
  PRIMARY KEY (job_id, lead_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The explicit lead ids of a job (arguments, --ids-file, a request), sorted and unique by the
-- primary key; a job walks them by keyset, so a resumed job needs neither the original file nor
-- memory for the whole list. Written with the job row in one transaction.
CREATE TABLE IF NOT EXISTS archiver_job_ids (
  job_id BIGINT UNSIGNED NOT NULL,
  lead_id INT UNSIGNED NOT NULL,
  PRIMARY KEY (job_id, lead_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
