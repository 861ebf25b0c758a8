"""The client-matrix suite (tests/clients/README.md) for Python's drivers:
PyMySQL, mysql-connector-python (pure Python and its C extension) and
mysqlclient. Usage: suite.py PORT TABLE VARIANT, VARIANT one of pymysql,
connector-pure, connector-c, mysqlclient. Prints one JSON line per step."""

import json
import sys
import threading

PORT, TABLE, VARIANT = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def connect(**extra):
    common = dict(host="127.0.0.1", port=PORT, user="app", password="app", database="matrix")
    common.update(extra)
    if VARIANT == "pymysql":
        import pymysql

        return pymysql.connect(**common)
    if VARIANT in ("connector-pure", "connector-c"):
        import mysql.connector

        return mysql.connector.connect(use_pure=VARIANT == "connector-pure", **common)
    if VARIANT == "mysqlclient":
        import MySQLdb

        return MySQLdb.connect(**common)
    raise SystemExit(f"unknown variant {VARIANT}")


def value(v):
    if isinstance(v, (bytes, bytearray)):
        return ["bytes", v.hex()]
    return [type(v).__name__, str(v)]


def error(e):
    # Every driver's errors carry the server's code and message; the SQL
    # state where the driver keeps it.
    code = getattr(e, "errno", None) or (e.args[0] if e.args else None)
    message = getattr(e, "msg", None) or (e.args[1] if len(e.args) > 1 else str(e))
    return {"error": code, "sqlstate": getattr(e, "sqlstate", None), "message": message}


def run(conn, sql, params=None, prepared=False):
    """Everything a client observes of one statement."""
    try:
        if prepared and VARIANT.startswith("connector"):
            cur = conn.cursor(prepared=True)
        else:
            cur = conn.cursor()
        affected = cur.execute(sql, params) if params is not None else cur.execute(sql)
        seen = {"rowcount": cur.rowcount, "lastrowid": cur.lastrowid}
        if cur.description:
            seen["columns"] = [d[0] for d in cur.description]
            seen["rows"] = [[value(v) for v in row] for row in cur.fetchall()]
        if VARIANT != "mysqlclient" and affected is not None:
            seen["affected"] = affected
        cur.close()
        return seen
    except Exception as e:  # noqa: BLE001 - the error is what is observed
        if not hasattr(e, "args") or not e.args:
            raise
        return error(e)


def step(name, seen):
    print(json.dumps({"step": name, "seen": seen}, sort_keys=True), flush=True)


def main():
    conn = connect(autocommit=True)
    step(
        "types",
        run(
            conn,
            "SELECT 1 AS i, -2 AS neg, 3.5 AS num, 'text' AS s, NULL AS n, "
            "CAST('2024-02-29 12:34:56' AS DATETIME) AS dt, CAST('2024-02-29' AS DATE) AS d, "
            "X'00FF' AS b, 12345678901234 AS big",
        ),
    )
    run(conn, f"DROP TABLE IF EXISTS {TABLE}")
    step("setup", run(conn, f"CREATE TABLE {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)"))
    step("insert", run(conn, f"INSERT INTO {TABLE} (v, n) VALUES ('a', 1), ('b', 2), ('c', 3)"))
    step("update", run(conn, f"UPDATE {TABLE} SET n = n + 10 WHERE id >= 2"))
    step("error", run(conn, "SELECT * FROM no_such_table"))
    step("duplicate", run(conn, f"INSERT INTO {TABLE} (id, v) VALUES (1, 'dup')"))
    step("warnings", [run(conn, "SELECT CAST('abc' AS INT) AS x"), run(conn, "SHOW WARNINGS")])

    tx = connect(autocommit=False)
    run(tx, f"INSERT INTO {TABLE} (v, n) VALUES ('r', 0)")
    tx.rollback()
    step("rollback", run(tx, f"SELECT COUNT(*) FROM {TABLE}"))
    tx.commit()
    run(tx, f"INSERT INTO {TABLE} (v, n) VALUES ('c2', 5)")
    tx.commit()
    step("commit", run(conn, f"SELECT COUNT(*) FROM {TABLE}"))
    tx.close()

    step("prepared", run(conn, f"SELECT id, v, n FROM {TABLE} WHERE id = %s", (2,), prepared=True))
    step("text", run(conn, f"SELECT v FROM {TABLE} WHERE n > 10 ORDER BY id"))
    run(conn, "CALL p_out(21, @b, @c)")
    step("procedure", run(conn, "SELECT @b, @c"))
    run(conn, "/*M!100000 SET @v = 7 */")
    run(conn, "/*!40101 SET @w = 8 */")
    step("executable", run(conn, "SELECT @v, @w"))
    run(conn, f"INSERT INTO {TABLE} (v, n) VALUES ('own', 99)")
    step("own_write", run(conn, f"SELECT n FROM {TABLE} WHERE v = 'own'"))

    results = [None] * 10

    def worker(i):
        c = connect(autocommit=True)
        run(c, f"INSERT INTO {TABLE} (v, n) VALUES ('w{i}', {i})")
        # Only the rows: which worker's insert got which id depends on timing.
        results[i] = run(c, f"SELECT n FROM {TABLE} WHERE v = 'w{i}'").get("rows")
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    step("pool", results)

    if VARIANT.startswith("connector"):
        conn.cmd_reset_connection()
        step("reset", run(conn, "SELECT @v"))
        conn.cmd_change_user(username="app", password="app", database="matrix")
        step("change_user", run(conn, "SELECT CURRENT_USER(), DATABASE(), @w"))
    else:
        step("reset", "not offered by the driver")
        step("change_user", "not offered by the driver")
    conn.close()

    for _ in range(3):
        connect().close()
    fresh = connect(autocommit=True)
    step(
        "fresh_after_pool",
        [run(fresh, f"SELECT COUNT (*) FROM {TABLE}"), run(fresh, "SELECT @@session.sql_mode")],
    )
    fresh.close()


main()
