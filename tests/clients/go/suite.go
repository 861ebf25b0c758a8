// The client-matrix suite (tests/clients/README.md) for Go's
// go-sql-driver/mysql (Debian's golang-github-go-sql-driver-mysql-dev),
// with server-side prepared statements or with parameters interpolated by
// the driver. Usage: go run suite.go PORT TABLE VARIANT, VARIANT prepared
// or interpolated. Prints one JSON line per step.
package main

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/go-sql-driver/mysql"
)

var port, table, variant = os.Args[1], os.Args[2], os.Args[3]

func open(connections int) *sql.DB {
	dsn := fmt.Sprintf("app:app@tcp(127.0.0.1:%s)/matrix?interpolateParams=%t", port, variant == "interpolated")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(connections)
	return db
}

func value(v interface{}) [2]string {
	switch v := v.(type) {
	case nil:
		return [2]string{"nil", "nil"}
	case []byte:
		return [2]string{"[]byte", hex.EncodeToString(v)}
	default:
		return [2]string{fmt.Sprintf("%T", v), fmt.Sprint(v)}
	}
}

func failure(err error) map[string]interface{} {
	var server *mysql.MySQLError
	if errors.As(err, &server) {
		return map[string]interface{}{"error": server.Number, "message": server.Message}
	}
	return map[string]interface{}{"failure": err.Error()}
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...interface{}) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...interface{}) (sql.Result, error)
}

// Everything a client observes of a statement that returns rows.
func query(q querier, statement string, args ...interface{}) map[string]interface{} {
	rows, err := q.QueryContext(context.Background(), statement, args...)
	if err != nil {
		return failure(err)
	}
	defer rows.Close()
	types, _ := rows.ColumnTypes()
	var columns []string
	for _, t := range types {
		columns = append(columns, t.Name()+":"+t.DatabaseTypeName())
	}
	var values [][][2]string
	for rows.Next() {
		cells := make([]interface{}, len(types))
		pointers := make([]interface{}, len(types))
		for i := range cells {
			pointers[i] = &cells[i]
		}
		if err := rows.Scan(pointers...); err != nil {
			return failure(err)
		}
		var row [][2]string
		for _, cell := range cells {
			row = append(row, value(cell))
		}
		values = append(values, row)
	}
	if err := rows.Err(); err != nil {
		return failure(err)
	}
	return map[string]interface{}{"columns": columns, "rows": values}
}

// Everything a client observes of a statement that changes rows.
func exec(q querier, statement string, args ...interface{}) map[string]interface{} {
	result, err := q.ExecContext(context.Background(), statement, args...)
	if err != nil {
		return failure(err)
	}
	affected, _ := result.RowsAffected()
	id, _ := result.LastInsertId()
	return map[string]interface{}{"affected": affected, "insertId": id}
}

func step(name string, seen interface{}) {
	line, _ := json.Marshal(map[string]interface{}{"step": name, "seen": seen})
	fmt.Println(string(line))
}

func main() {
	ctx := context.Background()
	db := open(1)
	// One connection for the session's steps, as an application's
	// request would hold it.
	conn, err := db.Conn(ctx)
	if err != nil {
		panic(err)
	}
	step("types", query(conn, "SELECT 1 AS i, -2 AS neg, 3.5 AS num, 'text' AS s, NULL AS n, "+
		"CAST('2024-02-29 12:34:56' AS DATETIME) AS dt, CAST('2024-02-29' AS DATE) AS d, "+
		"X'00FF' AS b, 12345678901234 AS big"))
	exec(conn, "DROP TABLE IF EXISTS "+table)
	step("setup", exec(conn, "CREATE TABLE "+table+" (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)"))
	step("insert", exec(conn, "INSERT INTO "+table+" (v, n) VALUES ('a', 1), ('b', 2), ('c', 3)"))
	step("update", exec(conn, "UPDATE "+table+" SET n = n + 10 WHERE id >= 2"))
	step("error", query(conn, "SELECT * FROM no_such_table"))
	step("duplicate", exec(conn, "INSERT INTO "+table+" (id, v) VALUES (1, 'dup')"))
	step("warnings", []interface{}{query(conn, "SELECT CAST('abc' AS INT) AS x"), query(conn, "SHOW WARNINGS")})

	other := open(2)
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	exec(tx, "INSERT INTO "+table+" (v, n) VALUES ('r', 0)")
	tx.Rollback()
	step("rollback", query(other, "SELECT COUNT(*) FROM "+table))
	tx, err = other.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	exec(tx, "INSERT INTO "+table+" (v, n) VALUES ('c2', 5)")
	tx.Commit()
	step("commit", query(conn, "SELECT COUNT(*) FROM "+table))
	other.Close()

	step("prepared", query(conn, "SELECT id, v, n FROM "+table+" WHERE id = ?", 2))
	step("text", query(conn, "SELECT v FROM "+table+" WHERE n > 10 ORDER BY id"))
	exec(conn, "CALL p_out(21, @b, @c)")
	step("procedure", query(conn, "SELECT @b, @c"))
	exec(conn, "/*M!100000 SET @v = 7 */")
	exec(conn, "/*!40101 SET @w = 8 */")
	step("executable", query(conn, "SELECT @v, @w"))
	exec(conn, "INSERT INTO "+table+" (v, n) VALUES ('own', 99)")
	step("own_write", query(conn, "SELECT n FROM "+table+" WHERE v = 'own'"))

	pool := open(10)
	results := make([]interface{}, 10)
	var workers sync.WaitGroup
	for i := 0; i < 10; i++ {
		workers.Add(1)
		go func(i int) {
			defer workers.Done()
			exec(pool, "INSERT INTO "+table+" (v, n) VALUES (?, ?)", fmt.Sprint("w", i), i)
			results[i] = query(pool, "SELECT n FROM "+table+" WHERE v = ?", fmt.Sprint("w", i))["rows"]
		}(i)
	}
	workers.Wait()
	step("pool", results)
	pool.Close()

	step("reset", "not offered by the driver")
	step("change_user", "not offered by the driver")
	conn.Close()
	db.Close()

	for i := 0; i < 3; i++ {
		db := open(1)
		query(db, "SELECT 1")
		db.Close()
	}
	fresh := open(1)
	step("fresh_after_pool", []interface{}{query(fresh, "SELECT COUNT (*) FROM "+table), query(fresh, "SELECT @@session.sql_mode")})
	fresh.Close()
}
