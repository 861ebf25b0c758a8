// The client-matrix suite (tests/clients/README.md) for MariaDB
// Connector/J (Debian's libmariadb-java), with server-side or client-side
// prepared statements. Usage:
//   java -cp /usr/share/java/mariadb-java-client.jar Suite.java PORT TABLE VARIANT
// VARIANT is server-prepares or client-prepares. Prints one JSON line per step.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

public class Suite {
    static String port, table, variant;

    static Connection connect() throws SQLException {
        boolean server = variant.equals("server-prepares");
        return DriverManager.getConnection("jdbc:mariadb://127.0.0.1:" + port
                + "/matrix?user=app&password=app&useServerPrepStmts=" + server);
    }

    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
            else out.append(c);
        }
        return out.append('"').toString();
    }

    static String value(Object v) {
        if (v == null) return "[\"null\",\"null\"]";
        if (v instanceof byte[]) {
            StringBuilder hex = new StringBuilder();
            for (byte b : (byte[]) v) hex.append(String.format("%02x", b));
            return "[\"byte[]\"," + quote(hex.toString()) + "]";
        }
        return "[" + quote(v.getClass().getSimpleName()) + "," + quote(v.toString()) + "]";
    }

    static String error(SQLException e) {
        // Connector/J puts the greeting's connection id before the server's
        // message; any two connections differ there.
        String message = e.getMessage().replaceFirst("^\\(conn=\\d+\\) ", "");
        return "{\"error\":" + e.getErrorCode() + ",\"sqlstate\":" + quote(String.valueOf(e.getSQLState()))
                + ",\"message\":" + quote(message) + "}";
    }

    static String warnings(SQLWarning w) {
        List<String> all = new ArrayList<>();
        for (; w != null; w = w.getNextWarning()) all.add(quote(w.getErrorCode() + " " + w.getMessage()));
        return "[" + String.join(",", all) + "]";
    }

    /** Everything a client observes of one executed statement. */
    static String observe(Statement st, boolean hasResult) throws SQLException {
        StringBuilder out = new StringBuilder("{");
        if (hasResult) {
            ResultSet rs = st.getResultSet();
            ResultSetMetaData meta = rs.getMetaData();
            List<String> columns = new ArrayList<>();
            for (int i = 1; i <= meta.getColumnCount(); i++) {
                columns.add(quote(meta.getColumnLabel(i) + ":" + meta.getColumnTypeName(i)));
            }
            List<String> rows = new ArrayList<>();
            while (rs.next()) {
                List<String> row = new ArrayList<>();
                for (int i = 1; i <= meta.getColumnCount(); i++) row.add(value(rs.getObject(i)));
                rows.add("[" + String.join(",", row) + "]");
            }
            out.append("\"columns\":[").append(String.join(",", columns)).append("],");
            out.append("\"rows\":[").append(String.join(",", rows)).append("],");
        } else {
            out.append("\"affected\":").append(st.getUpdateCount()).append(',');
            ResultSet keys = st.getGeneratedKeys();
            out.append("\"insertId\":").append(keys.next() ? keys.getLong(1) : -1).append(',');
        }
        out.append("\"warnings\":").append(warnings(st.getWarnings())).append('}');
        return out.toString();
    }

    static String run(Connection conn, String sql) {
        try (Statement st = conn.createStatement()) {
            return observe(st, st.execute(sql, Statement.RETURN_GENERATED_KEYS));
        } catch (SQLException e) {
            return error(e);
        }
    }

    static String prepared(Connection conn, String sql, int param) {
        try (PreparedStatement st = conn.prepareStatement(sql)) {
            st.setInt(1, param);
            return observe(st, st.execute());
        } catch (SQLException e) {
            return error(e);
        }
    }

    static void step(String name, String seen) {
        System.out.println("{\"step\":" + quote(name) + ",\"seen\":" + seen + "}");
    }

    public static void main(String[] args) throws Exception {
        port = args[0];
        table = args[1];
        variant = args[2];
        Connection conn = connect();
        step("types", run(conn, "SELECT 1 AS i, -2 AS neg, 3.5 AS num, 'text' AS s, NULL AS n, "
                + "CAST('2024-02-29 12:34:56' AS DATETIME) AS dt, CAST('2024-02-29' AS DATE) AS d, "
                + "X'00FF' AS b, 12345678901234 AS big"));
        run(conn, "DROP TABLE IF EXISTS " + table);
        step("setup", run(conn, "CREATE TABLE " + table + " (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)"));
        step("insert", run(conn, "INSERT INTO " + table + " (v, n) VALUES ('a', 1), ('b', 2), ('c', 3)"));
        step("update", run(conn, "UPDATE " + table + " SET n = n + 10 WHERE id >= 2"));
        step("error", run(conn, "SELECT * FROM no_such_table"));
        step("duplicate", run(conn, "INSERT INTO " + table + " (id, v) VALUES (1, 'dup')"));
        step("warnings", "[" + run(conn, "SELECT CAST('abc' AS INT) AS x") + "," + run(conn, "SHOW WARNINGS") + "]");

        Connection tx = connect();
        tx.setAutoCommit(false);
        run(tx, "INSERT INTO " + table + " (v, n) VALUES ('r', 0)");
        tx.rollback();
        step("rollback", run(tx, "SELECT COUNT(*) FROM " + table));
        run(tx, "INSERT INTO " + table + " (v, n) VALUES ('c2', 5)");
        tx.commit();
        step("commit", run(conn, "SELECT COUNT(*) FROM " + table));
        tx.close();

        step("prepared", prepared(conn, "SELECT id, v, n FROM " + table + " WHERE id = ?", 2));
        step("text", run(conn, "SELECT v FROM " + table + " WHERE n > 10 ORDER BY id"));
        run(conn, "CALL p_out(21, @b, @c)");
        step("procedure", run(conn, "SELECT @b, @c"));
        run(conn, "/*M!100000 SET @v = 7 */");
        run(conn, "/*!40101 SET @w = 8 */");
        step("executable", run(conn, "SELECT @v, @w"));
        run(conn, "INSERT INTO " + table + " (v, n) VALUES ('own', 99)");
        step("own_write", run(conn, "SELECT n FROM " + table + " WHERE v = 'own'"));

        String[] results = new String[10];
        Thread[] workers = new Thread[10];
        for (int i = 0; i < 10; i++) {
            final int n = i;
            workers[i] = new Thread(() -> {
                try (Connection c = connect()) {
                    run(c, "INSERT INTO " + table + " (v, n) VALUES ('w" + n + "', " + n + ")");
                    results[n] = prepared(c, "SELECT n FROM " + table + " WHERE v = CONCAT('w', ?)", n);
                } catch (SQLException e) {
                    results[n] = error(e);
                }
            });
            workers[i].start();
        }
        for (Thread t : workers) t.join();
        step("pool", "[" + String.join(",", results) + "]");

        conn.unwrap(org.mariadb.jdbc.MariaDbConnection.class).reset();
        step("reset", run(conn, "SELECT @v"));
        step("change_user", "\"not offered by the driver\"");
        conn.close();

        for (int i = 0; i < 3; i++) connect().close();
        Connection fresh = connect();
        step("fresh_after_pool", "[" + run(fresh, "SELECT COUNT (*) FROM " + table) + ","
                + run(fresh, "SELECT @@session.sql_mode") + "]");
        fresh.close();
    }
}
