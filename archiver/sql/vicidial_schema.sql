-- The VICIdial tables the archiver reads or writes, as the stock schema (1728) defines them.
-- Used by `demo`, the tests and the benchmarks to build a throwaway database; never run
-- against a real VICIdial database. {engine} is replaced by MyISAM or InnoDB.

CREATE TABLE vicidial_list (
  lead_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  entry_date DATETIME,
  modify_date TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  status VARCHAR(6),
  user VARCHAR(20),
  vendor_lead_code VARCHAR(20),
  source_id VARCHAR(50),
  list_id BIGINT(14) UNSIGNED NOT NULL DEFAULT '0',
  gmt_offset_now DECIMAL(4,2) DEFAULT '0.00',
  called_since_last_reset ENUM('Y','N','Y1','Y2','Y3','Y4','Y5','Y6','Y7','Y8','Y9','Y10','D') DEFAULT 'N',
  phone_code VARCHAR(10),
  phone_number VARCHAR(18) NOT NULL,
  title VARCHAR(4),
  first_name VARCHAR(30),
  middle_initial VARCHAR(1),
  last_name VARCHAR(30),
  address1 VARCHAR(100),
  address2 VARCHAR(100),
  address3 VARCHAR(100),
  city VARCHAR(50),
  state VARCHAR(2),
  province VARCHAR(50),
  postal_code VARCHAR(10),
  country_code VARCHAR(3),
  gender ENUM('M','F','U') DEFAULT 'U',
  date_of_birth DATE,
  alt_phone VARCHAR(12),
  email VARCHAR(70),
  security_phrase VARCHAR(100),
  comments VARCHAR(255),
  called_count SMALLINT(5) UNSIGNED DEFAULT '0',
  last_local_call_time DATETIME,
  `rank` SMALLINT(5) NOT NULL DEFAULT '0',
  owner VARCHAR(20) DEFAULT '',
  entry_list_id BIGINT(14) UNSIGNED NOT NULL DEFAULT '0',
  PRIMARY KEY (lead_id),
  INDEX phone_number (phone_number),
  INDEX list_id (list_id),
  INDEX called_since_last_reset (called_since_last_reset),
  INDEX status (status),
  INDEX gmt_offset_now (gmt_offset_now),
  INDEX postal_code (postal_code),
  INDEX last_local_call_time (last_local_call_time),
  INDEX `rank` (`rank`),
  INDEX owner (owner),
  INDEX phone_list (phone_number, list_id),
  INDEX list_phone (list_id, phone_number),
  INDEX list_status (list_id, status)
) ENGINE={engine} DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_unicode_ci;

CREATE TABLE vicidial_lists (
  list_id BIGINT(14) UNSIGNED NOT NULL,
  list_name VARCHAR(30),
  campaign_id VARCHAR(8),
  active ENUM('Y','N'),
  PRIMARY KEY (list_id),
  INDEX campaign_id (campaign_id)
) ENGINE={engine} DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_unicode_ci;

CREATE TABLE vicidial_hopper (
  hopper_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  lead_id INT(9) UNSIGNED NOT NULL,
  campaign_id VARCHAR(8),
  status ENUM('READY','QUEUE','INCALL','DONE','HOLD','DNC','RHOLD','RQUEUE') DEFAULT 'READY',
  list_id BIGINT(14) UNSIGNED NOT NULL,
  PRIMARY KEY (hopper_id),
  UNIQUE KEY lead_id (lead_id)
) ENGINE=MEMORY;

CREATE TABLE vicidial_auto_calls (
  auto_call_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  lead_id INT(9) UNSIGNED,
  campaign_id VARCHAR(20),
  status VARCHAR(10),
  PRIMARY KEY (auto_call_id),
  INDEX lead_id (lead_id)
) ENGINE=MEMORY;

CREATE TABLE vicidial_live_agents (
  live_agent_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  user VARCHAR(20),
  lead_id INT(9) UNSIGNED NOT NULL DEFAULT '0',
  status ENUM('READY','QUEUE','INCALL','PAUSED','CLOSER','MQUEUE') DEFAULT 'PAUSED',
  PRIMARY KEY (live_agent_id),
  INDEX lead_id (lead_id)
) ENGINE=MEMORY;

CREATE TABLE vicidial_callbacks (
  callback_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  lead_id INT(9) UNSIGNED,
  list_id BIGINT(14) UNSIGNED,
  campaign_id VARCHAR(8),
  status VARCHAR(10),
  entry_time DATETIME,
  callback_time DATETIME,
  user VARCHAR(20),
  PRIMARY KEY (callback_id),
  INDEX lead_id (lead_id),
  INDEX status (status)
) ENGINE={engine} DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_unicode_ci;

CREATE TABLE vicidial_admin_log (
  admin_log_id INT(9) UNSIGNED NOT NULL AUTO_INCREMENT,
  event_date DATETIME NOT NULL,
  user VARCHAR(20) NOT NULL,
  ip_address VARCHAR(45) NOT NULL,
  event_section VARCHAR(30) NOT NULL,
  event_type ENUM('ADD','COPY','LOAD','RESET','MODIFY','DELETE','SEARCH','LOGIN','LOGOUT','CLEAR','OVERRIDE','EXPORT','OTHER') DEFAULT 'OTHER',
  record_id VARCHAR(50) NOT NULL,
  event_code VARCHAR(255) NOT NULL,
  event_sql TEXT,
  event_notes TEXT,
  user_group VARCHAR(20) DEFAULT '---ALL---',
  PRIMARY KEY (admin_log_id),
  INDEX user (user),
  INDEX event_section (event_section),
  INDEX record_id (record_id)
) ENGINE={engine} DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_unicode_ci;
