-- Accounts for the docker-compose example; run on every server at first start.
-- The application user may not bypass read_only (no READ_ONLY ADMIN), so a
-- write sent to a replica by mistake fails loudly.
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-secret';
GRANT ALL PRIVILEGES ON shop.* TO 'app'@'%';
CREATE DATABASE IF NOT EXISTS shop;
CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'monitor-secret';
GRANT SUPER, RELOAD, PROCESS, SHOW DATABASES, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN,
      REPLICATION MASTER ADMIN, BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN
      ON *.* TO 'monitor'@'%';
-- The replication account on every server, not only the first primary: after
-- a switchover or failover any of them may be the one others replicate from.
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl-secret';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
GRANT ALL PRIVILEGES ON rwsplit.* TO 'monitor'@'%';
