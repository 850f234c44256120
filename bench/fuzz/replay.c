/*
 * replay.c: run a fuzz target on files, without libFuzzer (for the test suite, built
 * with AddressSanitizer and UBSan by any C compiler).
 *
 *   bin/csv_replay corpus/csv [FILE|DIR]...
 *
 * Every regular file named, or found directly in a directory named, is one input.
 * Prints the count; a sanitizer report or a target's abort() fails the run.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int	run_file(const char *path);

/* Feed one file to the target; 0, or -1 when it cannot be read. */
static int
run_file(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		fprintf(stderr, "cannot read %s\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	buf = malloc(n ? n : 1);
	if (fread(buf, 1, n, f) != (size_t) n)
	{
		fprintf(stderr, "cannot read %s\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

/* Replay every input named on the command line. */
int
main(int argc, char **argv)
{
	int			i;
	long		count = 0;

	for (i = 1; i < argc; i++)
	{
		struct stat st;

		if (stat(argv[i], &st) != 0)
		{
			fprintf(stderr, "cannot stat %s\n", argv[i]);
			return 1;
		}
		if (S_ISDIR(st.st_mode))
		{
			DIR		   *d = opendir(argv[i]);
			struct dirent *e;

			while (d && (e = readdir(d)) != NULL)
			{
				char		path[4096];

				if (e->d_name[0] == '.')
					continue;
				snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
				if (run_file(path) != 0)
					return 1;
				count++;
			}
			if (d)
				closedir(d);
		}
		else
		{
			if (run_file(argv[i]) != 0)
				return 1;
			count++;
		}
	}
	printf("%ld inputs replayed\n", count);
	return count > 0 ? 0 : 1;
}
