<?php
// The client-matrix suite (tests/clients/README.md) for PHP's drivers:
// mysqli, and PDO_MySQL with emulated and native prepares. Usage:
//   php suite.php PORT TABLE VARIANT
// VARIANT is mysqli, pdo-emulated or pdo-native. Prints one JSON line per step.

[, $port, $table, $variant] = $argv;
mysqli_report(MYSQLI_REPORT_OFF);

function connect()
{
    global $port, $variant;
    if ($variant === 'mysqli') {
        return new mysqli('127.0.0.1', 'app', 'app', 'matrix', (int) $port);
    }
    return new PDO("mysql:host=127.0.0.1;port=$port;dbname=matrix", 'app', 'app', [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_SILENT,
        PDO::ATTR_EMULATE_PREPARES => $variant === 'pdo-emulated',
    ]);
}

function value($v)
{
    return [gettype($v), $v === null ? 'null' : (is_string($v) && !preg_match('//u', $v) ? bin2hex($v) : (string) $v)];
}

// Everything a client observes of one statement (with `$param` as a
// prepared statement's parameter).
function run($conn, $sql, $param = null)
{
    if ($conn instanceof mysqli) {
        if ($param === null) {
            $result = $conn->query($sql);
        } else {
            $stmt = $conn->prepare($sql);
            $stmt->bind_param('i', $param);
            $stmt->execute();
            $result = $stmt->get_result();
        }
        if ($result === false) {
            return ['error' => $conn->errno, 'sqlstate' => $conn->sqlstate, 'message' => $conn->error];
        }
        $seen = ['affected' => $conn->affected_rows, 'insertId' => $conn->insert_id, 'warnings' => $conn->warning_count];
        if ($result instanceof mysqli_result) {
            $seen['columns'] = array_map(fn ($f) => $f->name . ':' . $f->type, $result->fetch_fields());
            $seen['rows'] = array_map(fn ($row) => array_map('value', $row), $result->fetch_all(MYSQLI_NUM));
        }
        return $seen;
    }
    $stmt = $param === null ? $conn->query($sql) : $conn->prepare($sql);
    if ($stmt !== false && $param !== null && !$stmt->execute([$param])) {
        $stmt = false;
        $error = $conn->errorInfo();
    }
    if ($stmt === false) {
        $error = $error ?? $conn->errorInfo();
        return ['error' => $error[1], 'sqlstate' => $error[0], 'message' => $error[2]];
    }
    $seen = ['affected' => $stmt->rowCount(), 'insertId' => $conn->lastInsertId()];
    if ($stmt->columnCount() > 0) {
        $columns = [];
        for ($i = 0; $i < $stmt->columnCount(); $i++) {
            $meta = $stmt->getColumnMeta($i);
            $columns[] = $meta['name'] . ':' . ($meta['native_type'] ?? '?');
        }
        $seen['columns'] = $columns;
        $seen['rows'] = array_map(fn ($row) => array_map('value', $row), $stmt->fetchAll(PDO::FETCH_NUM));
    }
    return $seen;
}

function step($name, $seen)
{
    echo json_encode(['step' => $name, 'seen' => $seen]), "\n";
}

$conn = connect();
step('types', run($conn, "SELECT 1 AS i, -2 AS neg, 3.5 AS num, 'text' AS s, NULL AS n, "
    . "CAST('2024-02-29 12:34:56' AS DATETIME) AS dt, CAST('2024-02-29' AS DATE) AS d, "
    . "X'00FF' AS b, 12345678901234 AS big"));
run($conn, "DROP TABLE IF EXISTS $table");
step('setup', run($conn, "CREATE TABLE $table (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)"));
step('insert', run($conn, "INSERT INTO $table (v, n) VALUES ('a', 1), ('b', 2), ('c', 3)"));
step('update', run($conn, "UPDATE $table SET n = n + 10 WHERE id >= 2"));
step('error', run($conn, 'SELECT * FROM no_such_table'));
step('duplicate', run($conn, "INSERT INTO $table (id, v) VALUES (1, 'dup')"));
step('warnings', [run($conn, "SELECT CAST('abc' AS INT) AS x"), run($conn, 'SHOW WARNINGS')]);

$tx = connect();
if ($tx instanceof mysqli) {
    $tx->begin_transaction();
} else {
    $tx->beginTransaction();
}
run($tx, "INSERT INTO $table (v, n) VALUES ('r', 0)");
$tx->rollback();
step('rollback', run($tx, "SELECT COUNT(*) FROM $table"));
if ($tx instanceof mysqli) {
    $tx->begin_transaction();
} else {
    $tx->beginTransaction();
}
run($tx, "INSERT INTO $table (v, n) VALUES ('c2', 5)");
$tx->commit();
step('commit', run($conn, "SELECT COUNT(*) FROM $table"));
$tx = null;

step('prepared', run($conn, "SELECT id, v, n FROM $table WHERE id = ?", 2));
step('text', run($conn, "SELECT v FROM $table WHERE n > 10 ORDER BY id"));
run($conn, 'CALL p_out(21, @b, @c)');
step('procedure', run($conn, 'SELECT @b, @c'));
run($conn, '/*M!100000 SET @v = 7 */');
run($conn, '/*!40101 SET @w = 8 */');
step('executable', run($conn, 'SELECT @v, @w'));
run($conn, "INSERT INTO $table (v, n) VALUES ('own', 99)");
step('own_write', run($conn, "SELECT n FROM $table WHERE v = 'own'"));

// PHP has no threads: ten connections used in turn, as a pool's would be.
$pool = array_map(fn () => connect(), range(0, 9));
foreach ($pool as $i => $c) {
    run($c, "INSERT INTO $table (v, n) VALUES ('w$i', $i)");
}
$results = [];
foreach ($pool as $i => $c) {
    $results[] = run($pool[($i + 1) % 10], "SELECT n FROM $table WHERE v = 'w$i'")['rows'];
}
step('pool', $results);
$pool = null;

if ($conn instanceof mysqli) {
    step('reset', 'not offered by the driver');
    $conn->change_user('app', 'app', 'matrix');
    step('change_user', run($conn, 'SELECT CURRENT_USER(), DATABASE(), @w'));
} else {
    step('reset', 'not offered by the driver');
    step('change_user', 'not offered by the driver');
}
$conn = null;

for ($i = 0; $i < 3; $i++) {
    connect();
}
$fresh = connect();
step('fresh_after_pool', [run($fresh, "SELECT COUNT (*) FROM $table"), run($fresh, 'SELECT @@session.sql_mode')]);
