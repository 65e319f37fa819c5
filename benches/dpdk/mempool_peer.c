/*
 * mempool_peer: DPDK's rte_mempool measured with the inner loop of DPDK's
 * mempool_perf_autotest (app/test/test_mempool_perf.c), for a side-by-side
 * comparison with xfwd's pool (benches/src/mempool.rs prints the same fields).
 *
 * Each lcore gets n_keep objects in bulks of n_bulk and puts them back in
 * bulks of n_bulk; rate = objects got+put per second summed over lcores.
 * dpdk-test's own mempool_perf_autotest runs the same loop but needs ~35 min
 * to reach the per-lcore-cache cases (benches/mempool_vs_dpdk.sh --full runs it).
 *
 * usage: mempool_peer <EAL args> -- <secs> <cache> <cores> <n_bulk> <n_keep>
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#define LOOP_OBJS 65536
#define KEEP_MAX 128

static struct rte_mempool *pool;
static unsigned int bulk, keep, cores;
static double secs;
static volatile int start_flag;
static uint64_t done[RTE_MAX_LCORE];

static int worker(void *unused)
{
	void *held[KEEP_MAX];
	unsigned int me = rte_lcore_id(), i, j;
	uint64_t n = 0, t0, limit;

	(void)unused;
	while (!start_flag)
		;
	limit = (uint64_t)(secs * rte_get_timer_hz());
	t0 = rte_get_timer_cycles();
	while (rte_get_timer_cycles() - t0 < limit) {
		for (i = 0; i < LOOP_OBJS / keep; i++) {
			for (j = 0; j < keep; j += bulk)
				if (rte_mempool_get_bulk(pool, &held[j], bulk) != 0)
					return -1;
			for (j = 0; j < keep; j += bulk)
				rte_mempool_put_bulk(pool, &held[j], bulk);
		}
		n += LOOP_OBJS;
	}
	done[me] = n;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned int cache, lc, launched = 1;
	uint64_t total = 0;
	int used = rte_eal_init(argc, argv);

	if (used < 0 || argc - used < 6) {
		fprintf(stderr, "usage: mempool_peer <EAL> -- secs cache cores bulk keep\n");
		return 2;
	}
	argv += used;
	secs = atof(argv[1]);
	cache = atoi(argv[2]);
	cores = atoi(argv[3]);
	bulk = atoi(argv[4]);
	keep = atoi(argv[5]);
	if (keep > KEEP_MAX || bulk == 0 || keep % bulk != 0)
		return 2;
	pool = rte_mempool_create("peer", 2 * (KEEP_MAX + 2 * RTE_MEMPOOL_CACHE_MAX_SIZE) + 1024,
				  2048, cache, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	if (pool == NULL)
		return 1;
	RTE_LCORE_FOREACH_WORKER(lc) {
		if (launched >= cores)
			break;
		rte_eal_remote_launch(worker, NULL, lc);
		launched++;
	}
	start_flag = 1;
	worker(NULL);
	rte_eal_mp_wait_lcore();
	RTE_LCORE_FOREACH(lc)
		total += done[lc];
	printf("dpdk_mempool_bench ops=%s cache=%u cores=%u n_get_bulk=%u n_put_bulk=%u n_keep=%u rate_persec=%.0f\n",
	       rte_mempool_get_ops(pool->ops_index)->name, cache, cores, bulk, bulk, keep,
	       total / secs);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return 0;
}
