-- Accounts for the docker-compose example; run on every server at first start.
-- The application user may not bypass read_only (no READ_ONLY ADMIN), so a
-- write sent to a replica by mistake fails loudly.
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-secret';
GRANT ALL PRIVILEGES ON shop.* TO 'app'@'%';
CREATE DATABASE IF NOT EXISTS shop;
CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'monitor-secret';
GRANT SUPER, RELOAD, PROCESS, SHOW DATABASES, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN,
      BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN ON *.* TO 'monitor'@'%';
GRANT ALL PRIVILEGES ON rwsplit.* TO 'monitor'@'%';
