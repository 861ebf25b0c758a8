"""PyMySQL through rwsplit: transactions, LOAD DATA LOCAL, TLS, and values
compared with a direct connection. Run by tests/clients.rs; prints one
line per check and exits non-zero (with a traceback) on any failure."""

import argparse
import os
import ssl
import tempfile

import pymysql


def connect(port, **extra):
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app", **extra)


def setup(direct_port):
    with connect(direct_port) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS py")
        cur.execute("CREATE TABLE IF NOT EXISTS py.accounts (id INT PRIMARY KEY, balance INT)")
        cur.execute("CREATE TABLE IF NOT EXISTS py.loaded (id INT, name VARCHAR(20))")
        cur.execute("DELETE FROM py.accounts")
        cur.execute("DELETE FROM py.loaded")
        conn.commit()


def check_transactions(port):
    conn = connect(port, database="py", autocommit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO accounts VALUES (1, 100)")
        conn.rollback()
        cur.execute("SELECT COUNT(*) FROM accounts")
        assert cur.fetchone() == (0,), "rollback must undo the insert"
        cur.execute("INSERT INTO accounts VALUES (1, 100), (2, 50)")
        cur.execute("UPDATE accounts SET balance = balance - 30 WHERE id = 1")
        cur.execute("UPDATE accounts SET balance = balance + 30 WHERE id = 2")
        conn.commit()
    conn.close()
    with connect(port, database="py") as other, other.cursor() as cur:
        cur.execute("SELECT id, balance FROM accounts ORDER BY id")
        assert cur.fetchall() == ((1, 70), (2, 80)), "committed from another session"
    print("transactions ok")


def check_load_data(port):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        for i in range(1000):
            f.write(f"{i},name {i}\n")
        path = f.name
    try:
        with connect(port, database="py", local_infile=True, autocommit=True) as conn, conn.cursor() as cur:
            loaded = cur.execute(
                "LOAD DATA LOCAL INFILE %s INTO TABLE loaded FIELDS TERMINATED BY ','", (path,)
            )
            assert loaded == 1000, f"loaded {loaded} rows"
            cur.execute("SELECT COUNT(*), MAX(name) FROM loaded")
            assert cur.fetchone() == (1000, "name 999")
    finally:
        os.unlink(path)
    print("load data ok")


def check_tls(port, ca):
    context = ssl.create_default_context(cafile=ca)
    with connect(port, ssl=context) as conn, conn.cursor() as cur:
        version = conn._sock.version()
        assert version in ("TLSv1.2", "TLSv1.3"), f"not encrypted: {version}"
        cur.execute("SELECT 'over tls'")
        assert cur.fetchone() == ("over tls",)
    print(f"tls ok ({version})")


def check_types(proxy_port, direct_port):
    query = (
        "SELECT 1, -2.5, CAST(3 AS UNSIGNED), 'ü😀', NULL, CURDATE() = CURDATE(), "
        "CAST('2024-02-29 12:00:00.5' AS DATETIME(1)), CAST('12:34:56' AS TIME), x'00ff', "
        "CAST(1.10 AS DECIMAL(5,2)), JSON_ARRAY(1, 'a')"
    )
    results = []
    for port in (proxy_port, direct_port):
        with connect(port) as conn, conn.cursor() as cur:
            cur.execute(query)
            results.append((cur.fetchall(), [d[:2] for d in cur.description]))
    assert results[0] == results[1], f"through rwsplit {results[0]} != direct {results[1]}"
    print("types ok")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--direct-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()
    setup(args.direct_port)
    check_transactions(args.proxy_port)
    check_load_data(args.proxy_port)
    check_tls(args.proxy_port, args.ca)
    check_types(args.proxy_port, args.direct_port)


if __name__ == "__main__":
    main()
