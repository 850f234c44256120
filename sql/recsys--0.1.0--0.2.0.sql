/* recsys 0.1.0 -> 0.2.0: aggregation (ratings, user profiles, movie statistics, item neighbours). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION recsys UPDATE TO '0.2.0'" to load this file. \quit
