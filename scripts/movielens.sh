#!/usr/bin/env bash
# scripts/movielens.sh DIR: write real MovieLens data as DIR/movies.csv and
# DIR/ratings.csv, in GroupLens's CSV format.
#
# With a network it downloads ml-latest-small from GroupLens. Offline it writes the
# same data set (100,004 ratings of 9,066 movies by 671 users) from Debian's
# r-cran-dslabs, whose `movielens` frame keeps the year in a column of its own: the
# title gets it back as "Title (Year)", as in GroupLens's files. The files are made
# readable by everyone, since the database server reads them as its own OS user.
set -euo pipefail
DIR=${1:?usage: scripts/movielens.sh DIR}
mkdir -p "$DIR"

if [ -z "${RECSYS_OFFLINE:-}" ] && command -v unzip >/dev/null &&
    curl -fsS --max-time 20 -o "$DIR/ml-latest-small.zip" \
        https://files.grouplens.org/datasets/movielens/ml-latest-small.zip 2>/dev/null; then
    unzip -q -o -j "$DIR/ml-latest-small.zip" 'ml-latest-small/movies.csv' 'ml-latest-small/ratings.csv' -d "$DIR"
    rm -f "$DIR/ml-latest-small.zip"
    echo "movielens: ml-latest-small from GroupLens in $DIR"
else
    rm -f "$DIR/ml-latest-small.zip"
    Rscript --vanilla - "$DIR" <<'RSCRIPT'
suppressMessages(library(dslabs))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
data(movielens)
m <- unique(movielens[, c("movieId", "title", "year", "genres")])
m <- m[order(m$movieId), ]
title <- ifelse(is.na(m$year), m$title, paste0(m$title, " (", m$year, ")"))
movies <- data.frame(movieId = m$movieId, title = title, genres = as.character(m$genres))
write.csv(movies, file.path(dir, "movies.csv"), row.names = FALSE, quote = TRUE, fileEncoding = "UTF-8")
r <- movielens[, c("userId", "movieId", "rating", "timestamp")]
write.csv(r, file.path(dir, "ratings.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("movielens: %d movies, %d ratings from r-cran-dslabs in %s\n", nrow(movies), nrow(r), dir))
RSCRIPT
fi
chmod 0755 "$DIR"
chmod 0644 "$DIR/movies.csv" "$DIR/ratings.csv"
