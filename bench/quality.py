#!/usr/bin/env python3
"""bench/quality.py: offline quality of recsys_recommend on real MovieLens data.

   bench/quality.sh            (the wrapper: data, an isolated stack world, this script)

Protocol (issue 8):
  * split: each user's ratings sorted by time (then movie id); the latest 20 % (rounded,
    at least one when the user has 5 or more) are the test part, the rest the training
    part.  The same cut applied to each user's training ratings gives the validation
    part (and the sub-training part before it).
  * relevant = a held-out rating of 4 or more; users with no relevant held-out rating
    are skipped; every movie the user has not rated in the training input is a
    candidate (recsys_recommend never returns a rated movie).
  * metrics: P@5, Recall@10, NDCG@10 (binary gains, ideal DCG over min(|rel|, 10)).
  * baseline: most popular (movies ranked by their number of training ratings, ties to
    the lower id), skipping the user's rated movies, in the same run.
  * tuning: the neighbour similarity (recsys.neighbors_*) and the blend
    (recsys.recommend_*) are chosen by coordinate search on the validation part
    (trained on the sub-training part) and only then applied, unchanged, to the test
    part (trained on the whole training part): the test figures are never looked at
    while tuning.
  * the paired bootstrap interval (1000 resamples of users, seed 7) of the difference
    of NDCG@10, recsys minus most-popular, and of the ratio.
Every step goes through the real pipeline: recsys_ingest_csv, the archiver,
recsys_aggregate, recsys_recommend.
"""
import csv
import json
import math
import os
import random
import subprocess
import sys
import time

DATA = sys.argv[1]          # directory with movies.csv and ratings.csv
WORK = sys.argv[2]          # scratch directory readable by the server
PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t"]


def psql(*sql):
    args = list(PSQL)
    for s in sql:
        args += ["-c", s]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return out.stdout


def read_ratings(path):
    rows = []
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for row in r:
            rows.append((int(row["userId"]), int(row["movieId"]), float(row["rating"]), int(row["timestamp"])))
    return rows


def split(rows):
    """The latest 20 % of each user's ratings by time: (kept, held out)."""
    by_user = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    kept, held = [], []
    for u in sorted(by_user):
        rs = sorted(by_user[u], key=lambda x: (x[3], x[1]))
        k = int(round(0.2 * len(rs)))
        if k == 0 and len(rs) >= 5:
            k = 1
        cut = len(rs) - k
        kept += rs[:cut]
        held += rs[cut:]
    return kept, held


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u, m, r, t in rows:
            w.writerow([u, m, ("%.1f" % r), t])
    os.chmod(path, 0o644)


def relevant_sets(held):
    rel = {}
    for u, m, r, t in held:
        if r >= 4.0:
            rel.setdefault(u, set()).add(m)
    return rel


def metrics(ranked, rel):
    """(P@5, Recall@10, NDCG@10) of one user's ranked list."""
    top5 = ranked[:5]
    top10 = ranked[:10]
    p5 = sum(1 for m in top5 if m in rel) / 5.0
    r10 = sum(1 for m in top10 if m in rel) / float(len(rel))
    dcg = sum(1.0 / math.log2(i + 2) for i, m in enumerate(top10) if m in rel)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), 10)))
    return p5, r10, dcg / idcg


def evaluate(lists, rel):
    per_user = {u: metrics(lists.get(u, []), rel[u]) for u in rel}
    n = len(per_user)
    mean = tuple(sum(v[i] for v in per_user.values()) / n for i in range(3))
    return mean, per_user


def popular_lists(train, users):
    count = {}
    rated = {}
    for u, m, r, t in train:
        count[m] = count.get(m, 0) + 1
        rated.setdefault(u, set()).add(m)
    order = sorted(count, key=lambda m: (-count[m], m))
    lists = {}
    for u in users:
        seen = rated.get(u, set())
        lists[u] = [m for m in order if m not in seen][:10]
    return lists


def load_world(train_path):
    """A new, empty extension; the catalogue and one ratings file through the pipeline."""
    psql("SET client_min_messages = warning", "DROP EXTENSION IF EXISTS pg_cron",
         "DROP EXTENSION IF EXISTS recsys CASCADE", "CREATE EXTENSION recsys",
         "CREATE EXTENSION pg_cron SCHEMA public")
    time.sleep(1.0)
    psql("SELECT recsys_load_movies('%s/movies.csv')" % DATA)
    out = psql("SELECT events || ' ' || rejected FROM recsys_ingest_csv('%s')" % train_path)
    psql("SELECT recsys_archive_sync('300 s')")
    return out.strip()


def settings_sql(cfg):
    return ["SET recsys.%s = %s" % (k, v) for k, v in sorted(cfg.items())]


def aggregate(cfg):
    """Aggregate with these neighbour settings (recomputing the neighbours)."""
    psql(*(settings_sql(cfg) + ["SET recsys.neighbors_refresh = 0",
                                "SELECT objects FROM recsys_aggregate()"]))


def recommend_all(users, cfg):
    arr = ",".join(str(u) for u in sorted(users))
    out = psql(*(settings_sql(cfg) + [
        "SELECT u, r.movie_id FROM unnest('{%s}'::bigint[]) u, LATERAL recsys_recommend(u, 10) r "
        "ORDER BY u, r.rank" % arr]))
    lists = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        u, m = line.split("\t")
        lists.setdefault(int(u), []).append(int(m))
    return lists


NEIGHBOR_KEYS = ("neighbors_alpha", "neighbors_beta", "neighbors_shrink", "neighbors_min_common",
                 "neighbors_user_cap", "neighbors_k")
GRID = {
    "neighbors_alpha": ["0", "0.25", "0.5", "0.75"],
    "neighbors_beta": ["0.3", "0.5", "0.7"],
    "neighbors_shrink": ["0", "5", "20", "50"],
    "neighbors_min_common": ["1", "2", "3"],
    "neighbors_k": ["20", "50"],
    "recommend_neutral": ["0", "1.5", "2.5", "3.0"],
    "recommend_half_life": ["30", "180", "365", "0"],
    "recommend_popularity_weight": ["0", "0.1", "0.3", "0.6", "1.0"],
    "recommend_genre_weight": ["0", "0.1", "0.3"],
    "recommend_seeds": ["20", "50", "100"],
}
START = {"neighbors_alpha": "0.5", "neighbors_beta": "0.5", "neighbors_shrink": "10",
         "neighbors_min_common": "2", "neighbors_k": "20", "neighbors_user_cap": "500",
         "recommend_neutral": "2.5", "recommend_half_life": "365",
         "recommend_popularity_weight": "0.5", "recommend_genre_weight": "0.2",
         "recommend_seeds": "50"}


def tune(val_rel, log):
    """Coordinate search on the validation part: two passes over every parameter."""
    best = dict(START)
    cache = {}

    def score(cfg):
        key = json.dumps(cfg, sort_keys=True)
        if key in cache:
            return cache[key]
        nkey = json.dumps({k: cfg[k] for k in NEIGHBOR_KEYS}, sort_keys=True)
        if score.last_neighbors != nkey:
            aggregate({k: cfg[k] for k in NEIGHBOR_KEYS})
            score.last_neighbors = nkey
        lists = recommend_all(val_rel.keys(), cfg)
        (p5, r10, ndcg), _ = evaluate(lists, val_rel)
        cache[key] = ndcg
        log.write("  val NDCG@10 %.5f  %s\n" % (ndcg, json.dumps(cfg, sort_keys=True)))
        log.flush()
        return ndcg
    score.last_neighbors = None

    best_score = score(best)
    for _ in range(2):
        improved = False
        for param in GRID:
            for v in GRID[param]:
                if v == best[param]:
                    continue
                cfg = dict(best)
                cfg[param] = v
                s = score(cfg)
                if s > best_score + 1e-9:
                    best, best_score, improved = cfg, s, True
        if not improved:
            break
    return best, best_score


def bootstrap(a, b, users, n=1000, seed=7):
    rnd = random.Random(seed)
    diffs, ratios = [], []
    for _ in range(n):
        sample = [rnd.choice(users) for _ in users]
        ma = sum(a[u] for u in sample) / len(sample)
        mb = sum(b[u] for u in sample) / len(sample)
        diffs.append(ma - mb)
        ratios.append(ma / mb if mb > 0 else float("inf"))
    diffs.sort()
    ratios.sort()
    lo, hi = int(0.025 * n), int(0.975 * n) - 1
    return (diffs[lo], diffs[hi]), (ratios[lo], ratios[hi])


def main():
    log = sys.stderr
    rows = read_ratings(os.path.join(DATA, "ratings.csv"))
    train, test = split(rows)
    subtrain, val = split(train)
    for name, part in (("train", train), ("test", test), ("subtrain", subtrain), ("val", val)):
        write(os.path.join(WORK, name + ".csv"), part)
    log.write("quality: %d ratings, %d users; train %d, test %d; sub-train %d, validation %d\n"
              % (len(rows), len({r[0] for r in rows}), len(train), len(test), len(subtrain), len(val)))

    # 1. tuning on the validation part (trained on the sub-training part)
    t0 = time.time()
    log.write("quality: sub-training part through the pipeline: %s\n" % load_world(os.path.join(WORK, "subtrain.csv")))
    val_rel = relevant_sets(val)
    best, best_val = tune(val_rel, log)
    pop_val, _ = evaluate(popular_lists(subtrain, val_rel.keys()), val_rel)
    log.write("quality: tuned in %.0f s: validation NDCG@10 %.5f (most popular %.5f): %s\n"
              % (time.time() - t0, best_val, pop_val[2], json.dumps(best, sort_keys=True)))

    # 2. the test part, with the chosen parameters, trained on the whole training part
    log.write("quality: training part through the pipeline: %s\n" % load_world(os.path.join(WORK, "train.csv")))
    test_rel = relevant_sets(test)
    aggregate({k: best[k] for k in NEIGHBOR_KEYS})
    t1 = time.time()
    rec = recommend_all(test_rel.keys(), best)
    rec_s = time.time() - t1
    pop = popular_lists(train, test_rel.keys())
    (rp5, rr10, rndcg), rec_u = evaluate(rec, test_rel)
    (pp5, pr10, pndcg), pop_u = evaluate(pop, test_rel)
    users = sorted(test_rel)
    (dlo, dhi), (qlo, qhi) = bootstrap({u: rec_u[u][2] for u in users}, {u: pop_u[u][2] for u in users}, users)
    result = {
        "users_evaluated": len(users), "train_ratings": len(train), "test_ratings": len(test),
        "recsys": {"P@5": rp5, "Recall@10": rr10, "NDCG@10": rndcg},
        "most_popular": {"P@5": pp5, "Recall@10": pr10, "NDCG@10": pndcg},
        "ndcg_ratio": rndcg / pndcg if pndcg > 0 else None,
        "ndcg_diff_ci95": [dlo, dhi], "ndcg_ratio_ci95": [qlo, qhi],
        "parameters": best, "validation_ndcg": best_val, "validation_ndcg_most_popular": pop_val[2],
        "recommend_calls_seconds": rec_s,
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
