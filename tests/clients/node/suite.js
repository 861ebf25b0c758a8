// The client-matrix suite (tests/clients/README.md) for Node's drivers:
// mysql2 (query and execute) and mysql. Usage: node suite.js PORT TABLE
// VARIANT, VARIANT one of mysql2-query, mysql2-execute, mysql. Prints one
// JSON line per step.
'use strict';

const [PORT, TABLE, VARIANT] = process.argv.slice(2);
const driver = VARIANT === 'mysql' ? require('mysql') : require('mysql2');
const options = {
  host: '127.0.0.1',
  port: Number(PORT),
  user: 'app',
  password: 'app',
  database: 'matrix',
};

function value(v) {
  if (v === null) return ['null', 'null'];
  if (Buffer.isBuffer(v)) return ['Buffer', v.toString('hex')];
  if (v instanceof Date) return ['Date', v.toISOString()];
  return [typeof v, String(v)];
}

// Everything a client observes of one statement.
function run(conn, sql, params, execute) {
  return new Promise((resolve) => {
    const method = execute && VARIANT === 'mysql2-execute' ? 'execute' : 'query';
    conn[method](sql, params || [], (err, results, fields) => {
      if (err) {
        resolve({ error: err.errno, sqlstate: err.sqlState, message: err.sqlMessage });
      } else if (Array.isArray(results)) {
        resolve({
          columns: (fields || []).map((f) => f.name),
          rows: results.map((row) => Object.values(row).map(value)),
        });
      } else {
        resolve({
          affected: results.affectedRows,
          insertId: results.insertId,
          warnings: results.warningCount,
        });
      }
    });
  });
}

function step(name, seen) {
  console.log(JSON.stringify({ step: name, seen }));
}

const call = (conn, method, ...args) =>
  new Promise((resolve, reject) => conn[method](...args, (err) => (err ? reject(err) : resolve())));

async function main() {
  const conn = driver.createConnection(options);
  step('types', await run(conn,
    "SELECT 1 AS i, -2 AS neg, 3.5 AS num, 'text' AS s, NULL AS n, " +
    "CAST('2024-02-29 12:34:56' AS DATETIME) AS dt, CAST('2024-02-29' AS DATE) AS d, " +
    "X'00FF' AS b, 12345678901234 AS big"));
  await run(conn, `DROP TABLE IF EXISTS ${TABLE}`);
  step('setup', await run(conn, `CREATE TABLE ${TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)`));
  step('insert', await run(conn, `INSERT INTO ${TABLE} (v, n) VALUES ('a', 1), ('b', 2), ('c', 3)`));
  step('update', await run(conn, `UPDATE ${TABLE} SET n = n + 10 WHERE id >= 2`));
  step('error', await run(conn, 'SELECT * FROM no_such_table'));
  step('duplicate', await run(conn, `INSERT INTO ${TABLE} (id, v) VALUES (1, 'dup')`));
  step('warnings', [await run(conn, "SELECT CAST('abc' AS INT) AS x"), await run(conn, 'SHOW WARNINGS')]);

  const tx = driver.createConnection(options);
  await call(tx, 'beginTransaction');
  await run(tx, `INSERT INTO ${TABLE} (v, n) VALUES ('r', 0)`);
  await call(tx, 'rollback');
  step('rollback', await run(tx, `SELECT COUNT(*) FROM ${TABLE}`));
  await call(tx, 'beginTransaction');
  await run(tx, `INSERT INTO ${TABLE} (v, n) VALUES ('c2', 5)`);
  await call(tx, 'commit');
  step('commit', await run(conn, `SELECT COUNT(*) FROM ${TABLE}`));
  await call(tx, 'end');

  step('prepared', await run(conn, `SELECT id, v, n FROM ${TABLE} WHERE id = ?`, [2], true));
  step('text', await run(conn, `SELECT v FROM ${TABLE} WHERE n > 10 ORDER BY id`));
  await run(conn, 'CALL p_out(21, @b, @c)');
  step('procedure', await run(conn, 'SELECT @b, @c'));
  await run(conn, '/*M!100000 SET @v = 7 */');
  await run(conn, '/*!40101 SET @w = 8 */');
  step('executable', await run(conn, 'SELECT @v, @w'));
  await run(conn, `INSERT INTO ${TABLE} (v, n) VALUES ('own', 99)`);
  step('own_write', await run(conn, `SELECT n FROM ${TABLE} WHERE v = 'own'`));

  const pool = driver.createPool({ ...options, connectionLimit: 10 });
  const workers = [...Array(10).keys()].map(async (i) => {
    await run(pool, `INSERT INTO ${TABLE} (v, n) VALUES ('w${i}', ${i})`);
    return (await run(pool, `SELECT n FROM ${TABLE} WHERE v = 'w${i}'`, [], true)).rows;
  });
  step('pool', await Promise.all(workers));
  await call(pool, 'end');

  if (typeof conn.reset === 'function') {
    await call(conn, 'reset');
    step('reset', await run(conn, 'SELECT @v'));
  } else {
    step('reset', 'not offered by the driver');
  }
  await call(conn, 'changeUser', { user: 'app', password: 'app', database: 'matrix' });
  step('change_user', await run(conn, 'SELECT CURRENT_USER(), DATABASE(), @w'));
  await call(conn, 'end');

  for (let i = 0; i < 3; i++) {
    const c = driver.createConnection(options);
    await run(c, 'SELECT 1');
    await call(c, 'end');
  }
  const fresh = driver.createConnection(options);
  step('fresh_after_pool', [
    await run(fresh, `SELECT COUNT (*) FROM ${TABLE}`),
    await run(fresh, 'SELECT @@session.sql_mode'),
  ]);
  await call(fresh, 'end');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
