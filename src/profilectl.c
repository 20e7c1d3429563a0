/*
 * profilectl.c -- the operator CLI: dispatches to one subcommand per
 * module (ctl_*.c). Each subcommand parses its own flags from its own
 * option table (config.h machinery) and returns 0 / 1 (runtime) / 2 (usage).
 */
#include "ctl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} ctl_cmd;

static const ctl_cmd cmds[] = {
    {"broker", ctl_broker_main, "run the embedded Kafka broker (librdkafka mock cluster) for tests and demos"},
    {"produce", ctl_produce_main, "produce events (JSONL file or generated) keyed by user_id"},
    {"generate", ctl_generate_main, "write generated marketplace events as JSONL to stdout"},
    {"dump", ctl_dump_main, "print stored profiles of a worker's data directory (read-only)"},
    {"days", ctl_days_main, "list day column families with sizes and key counts"},
    {"offsets", ctl_offsets_main, "list checkpointed input offsets per partition"},
    {"schema", ctl_schema_main, "print a schema (a store's, a file's or the built-in one) in canonical JSON"},
    {"export", ctl_export_main, "print profiles as of the end of a past day (--at), as JSON lines, for training data"},
    {"import", ctl_import_main, "build a new store from archived events (JSON lines, gzip or plain) up to --until"},
    {"backup", ctl_backup_main, "take a consistent, incremental backup of a store (or ask a running worker to)"},
    {"restore", ctl_restore_main, "restore a backup into a new data directory"},
    {"backups", ctl_backups_main, "list the backups in a backup directory"},
    {"consume", ctl_consume_main, "print a topic's records with headers (e.g. the dead-letter topic)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: profilectl COMMAND [--flag value ...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(out, "\n`profilectl COMMAND --help` describes a command's flags.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "profilectl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
