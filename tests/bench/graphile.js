// make bench, the peer: graphile-worker draining N queued no-op jobs on PostgreSQL.
//   node tests/bench/graphile.js URL N CONCURRENCY
// (run with NODE_PATH=build/bench/node/node_modules; tests/bench/graphile.sh installs it).
// The jobs are queued with the bulk addJobs before anything is timed. Then the worker is
// started in this process: in-process async no-op task, batched completions
// (completeJobBatchDelay 0) and a local queue of 500 jobs, as graphile-worker's
// performance guide advises for throughput. Prints one line:
//   enqueue_per_s total_s steady_s rss_kib
// total_s: from the run() call to the moment the jobs table is empty (every completion
// committed); steady_s: from the first job's start to that same moment. Node's own start-up
// and module loading (about 0.1 s) come before run() and are not counted.
"use strict";
const { run, runMigrations, makeWorkerUtils } = require("graphile-worker");
const { Client } = require("pg");

async function main() {
    const [url, nArg, concArg] = process.argv.slice(2);
    const n = parseInt(nArg, 10), concurrency = parseInt(concArg, 10);
    if (!url || !(n > 0) || !(concurrency > 0)) {
        console.error("usage: graphile.js URL N CONCURRENCY");
        process.exit(2);
    }
    const { Logger } = require("graphile-worker");
    const quiet = new Logger(() => () => {});
    await runMigrations({ connectionString: url, logger: quiet });

    const utils = await makeWorkerUtils({ connectionString: url, logger: quiet });
    const chunk = 10000;
    const q0 = performance.now();
    for (let done = 0; done < n; done += chunk) {
        const specs = [];
        for (let i = done; i < Math.min(n, done + chunk); i++)
            specs.push({ identifier: "noop", payload: { i } });
        await utils.addJobs(specs);
    }
    const enqueuePerS = n / ((performance.now() - q0) / 1000);
    await utils.release();

    const probe = new Client({ connectionString: url });
    await probe.connect();
    const left = async () =>
        Number((await probe.query("SELECT count(*) AS c FROM graphile_worker._private_jobs")).rows[0].c);
    if ((await left()) !== n) throw new Error("the queue does not hold the jobs just added");

    let started = 0, first = 0;
    const t0 = performance.now();
    const runner = await run({
        noHandleSignals: true,
        logger: quiet,
        taskList: {
            noop: async () => {
                if (started++ === 0) first = performance.now();
            },
        },
        preset: {
            worker: {
                connectionString: url,
                concurrentJobs: concurrency,
                maxPoolSize: concurrency + 2,
                pollInterval: 1000,
                localQueue: { size: Number(process.env.GW_LQ || 500) },
                completeJobBatchDelay: 0,
                failJobBatchDelay: 0,
            },
        },
    });
    // Wait for the last start, then for the last batched completion to commit.
    while (started < n) await new Promise((r) => setTimeout(r, 5));
    while ((await left()) > 0) await new Promise((r) => setTimeout(r, 2));
    const t1 = performance.now();
    const rssKiB = Math.round(process.memoryUsage().rss / 1024);
    await runner.stop();
    await probe.end();
    console.log(
        `${enqueuePerS.toFixed(0)} ${((t1 - t0) / 1000).toFixed(3)} ${((t1 - first) / 1000).toFixed(3)} ${rssKiB}`
    );
}

main().catch((e) => {
    console.error("graphile.js:", e && e.stack ? e.stack : e);
    process.exit(1);
});
