// Row-sparse values through the JS API ({rows, rowIds}): MXNet's
// test_row_sparse_pull docstring example, a push of two values summed row
// by row, a lazy SGD update, a dist_sync store on the relay the Go test
// mounts at /ws, and bad row ids. Posts {checks: [[name, ok, detail]]}.
import * as webkv from '/webkv/webkv.js';
import {log, post} from './common.js';

const checks = [];
const check = (name, ok, detail) => { checks.push([name, !!ok, String(detail ?? '')]); log(`${ok ? 'ok' : 'FAIL'} ${name} ${detail ?? ''}`); };
const same = (a, b) => a.length === b.length && Array.from(a).every((x, i) => x === b[i]);

async function run(type, opts) {
  const kv = await webkv.create(type, opts);
  try {
    // test_row_sparse_pull: ones(4,4); rows [1, 0] -> rows 0 and 1.
    await kv.init('e', new Float32Array(16).fill(1), [4, 4]);
    const r = await kv.rowSparsePull('e', [1, 0]);
    check(`${type}: pull rows [1,0]`, same(r.rowIds, [0, 1]) && same(r.rows, new Array(8).fill(1)), JSON.stringify(r.rowIds));
    const r2 = await kv.rowSparsePull('e', new Int32Array([2, 2]));
    check(`${type}: pull rows [2,2]`, same(r2.rowIds, [2]) && r2.rows.length === 4, JSON.stringify(r2.rowIds));
    const dense = new Float32Array(16).fill(7);
    const d = await kv.rowSparsePull('e', [3], dense);
    check(`${type}: dense out`, d === dense && same(d, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]), Array.from(d));
    // Two values summed row by row; the sum is assigned (row 1 becomes 0).
    await kv.init('a', new Float32Array(8).fill(5), [4, 2]);
    await kv.pushRowSparse('a', [{rows: [1, 2, 3, 4], rowIds: [0, 2]}, {rows: new Float32Array([10, 20, 30, 40]), rowIds: [2, 3]}]);
    const a = await kv.pull('a');
    check(`${type}: summed push`, same(a, [1, 2, 0, 0, 13, 24, 30, 40]), Array.from(a));
    // Lazy SGD: weight decay leaves the rows not pushed alone.
    await kv.setOptimizer({name: 'sgd', learning_rate: 1, wd: 0.5});
    await kv.pushRowSparse('a', {rows: [1, 1], rowIds: [2]});
    const b = await kv.pull('a');
    check(`${type}: lazy sgd`, same(b, [1, 2, 0, 0, 13 - 1 - 6.5, 24 - 1 - 12, 30, 40]), Array.from(b));
    // Bad row ids reject with BAD_ROW_IDS.
    try {
      await kv.pushRowSparse('a', {rows: [1, 1, 1, 1], rowIds: [2, 1]});
      check(`${type}: unsorted rows rejected`, false, 'resolved');
    } catch (e) {
      check(`${type}: unsorted rows rejected`, e.code === 'BAD_ROW_IDS', `${e.code}: ${e.message}`);
    }
    try {
      await kv.rowSparsePull('a', [9]);
      check(`${type}: row out of range rejected`, false, 'resolved');
    } catch (e) {
      check(`${type}: row out of range rejected`, e.code === 'BAD_ROW_IDS', `${e.code}: ${e.message}`);
    }
  } finally {
    await kv.close();
  }
}

async function main() {
  const ws = location.origin.replace(/^http/, 'ws') + '/ws';
  for (const [type, opts] of [['local', {}], ['dist_sync', {url: ws, job: 'rsp'}]]) {
    try {
      await run(type, opts);
    } catch (e) {
      check(`${type}: ran`, false, `${e.code}: ${e.message}`);
    }
  }
  post({checks});
}

main().catch((e) => post({checks: [['page', false, String(e)]]}));
