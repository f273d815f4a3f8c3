-- Least-privilege account for vicidial-archiver (archive, dearchive, verify, search, jobs).
-- Runs before or after `vicidial-archiver schema init`: every table it names may not exist yet.
--
-- Replace `asterisk` with the VICIdial database name, the host and the password, then run as an
-- administrator: mysql -uroot < grants.sql. tests/integration/test_privileges.py runs one job
-- with exactly these grants on MyISAM and on InnoDB.
--
-- Host: the tool connects over TCP (PyMySQL has no Unix socket default; --astguiclient turns
-- VARDB_server=localhost into 127.0.0.1). With skip_name_resolve, the MariaDB default on Debian,
-- a TCP client from 127.0.0.1 matches '...'@'127.0.0.1', never '...'@'localhost'.
--
-- Nothing global: no SUPER, PROCESS, RELOAD, FILE, LOCK TABLES or CREATE TEMPORARY TABLES.
-- GET_LOCK (one job per database), SET SESSION (time_zone, sql_mode, lock wait timeouts,
-- isolation level), SHOW GLOBAL STATUS (--max-threads-running) and information_schema reads
-- (schema reflection; it lists only what the account holds a privilege on) need no grant.

CREATE USER IF NOT EXISTS 'vicidial_archiver'@'127.0.0.1' IDENTIFIED BY 'CHANGE_ME';

-- The two lead tables. Each chunk reads both (INSERT … SELECT … LEFT JOIN, UPDATE … JOIN,
-- DELETE … JOIN: the table read needs SELECT), locks rows with SELECT … FOR UPDATE on InnoDB,
-- and writes both: archive inserts/updates the archive and deletes live rows; dearchive inserts
-- live rows and deletes archive rows. ALTER and DROP are not granted. CREATE on the archive
-- table lets this grant be given before the table exists (a table-level grant without CREATE
-- on a missing table fails, and the mysql client stops there); it allows creating that one
-- table, nothing else (`schema init` also needs ALTER, below, or an administrator).
GRANT SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`vicidial_list` TO 'vicidial_archiver'@'127.0.0.1';
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`vicidial_list_archive` TO 'vicidial_archiver'@'127.0.0.1';
-- --optimize runs OPTIMIZE TABLE (MyISAM) or ANALYZE TABLE (InnoDB) on the table a run moved
-- leads out of: both need only SELECT and INSERT on it, granted above (checked on MariaDB
-- 10.11: without INSERT both fail with error 1142).

-- Read only: the live-lead guards (a lead queued, in a call, with an agent or with an
-- ACTIVE/LIVE callback is skipped) and the campaigns' lists (--campaign).
GRANT SELECT ON `asterisk`.`vicidial_hopper` TO 'vicidial_archiver'@'127.0.0.1';
GRANT SELECT ON `asterisk`.`vicidial_auto_calls` TO 'vicidial_archiver'@'127.0.0.1';
GRANT SELECT ON `asterisk`.`vicidial_live_agents` TO 'vicidial_archiver'@'127.0.0.1';
GRANT SELECT ON `asterisk`.`vicidial_callbacks` TO 'vicidial_archiver'@'127.0.0.1';
GRANT SELECT ON `asterisk`.`vicidial_lists` TO 'vicidial_archiver'@'127.0.0.1';

-- --admin-log: one row per run, as VICIdial's own archiver writes.
GRANT INSERT ON `asterisk`.`vicidial_admin_log` TO 'vicidial_archiver'@'127.0.0.1';

-- The checkpoint tables, which the tool creates on its first run (CREATE TABLE IF NOT EXISTS).
-- A pattern such as `asterisk`.`archiver\_%` does NOT work: MySQL and MariaDB accept wildcards
-- only in database names, and read a table name in GRANT literally (GRANT SELECT ON
-- `asterisk`.`archiver\_%` fails with "Table 'asterisk.archiver\_%' doesn't exist"). So each
-- table is named. A table-level grant that includes CREATE may be given before the table
-- exists. INSERT … ON DUPLICATE KEY UPDATE and INSERT IGNORE (chunk records) need INSERT and
-- UPDATE; `jobs prune` needs DELETE.
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`archiver_jobs` TO 'vicidial_archiver'@'127.0.0.1';
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`archiver_chunks` TO 'vicidial_archiver'@'127.0.0.1';
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`archiver_leads` TO 'vicidial_archiver'@'127.0.0.1';
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`archiver_pending` TO 'vicidial_archiver'@'127.0.0.1';
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `asterisk`.`archiver_job_ids` TO 'vicidial_archiver'@'127.0.0.1';
-- Upgrading from a version whose archiver_pending lacks copy_hash, prev_hash and tables_at:
-- the tool adds them on its first run, which needs ALTER on that table once (or run the
-- ALTER TABLE it prints as an administrator):
--     GRANT ALTER ON `asterisk`.`archiver_pending` TO 'vicidial_archiver'@'127.0.0.1';

-- Optional, only for the DBA commands that change the archive table's definition; better run
-- them as an administrator and leave these out:
--   schema init  (CREATE TABLE vicidial_list_archive LIKE vicidial_list; ALTER … MODIFY lead_id)
--     GRANT CREATE, ALTER ON `asterisk`.`vicidial_list_archive` TO 'vicidial_archiver'@'127.0.0.1';
--   schema sync --apply  (ALTER TABLE vicidial_list_archive …)
--     GRANT ALTER ON `asterisk`.`vicidial_list_archive` TO 'vicidial_archiver'@'127.0.0.1';
-- Optional, on each replica listed in [throttle] replicas (--max-replica-lag runs SHOW SLAVE
-- STATUS there; MariaDB 10.5+ calls the privilege SLAVE MONITOR):
--     GRANT SLAVE MONITOR ON *.* TO 'vicidial_archiver'@'<archiver host>';
