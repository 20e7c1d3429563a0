/*
 * ctl.h -- entry points of the profilectl subcommands. Each takes the
 * subcommand's own argv (argv[0] is the subcommand name) and returns the
 * process exit code: 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef PD_CTL_H
#define PD_CTL_H

/* `profilectl broker`: embedded librdkafka mock cluster (ctl_broker.c). */
int ctl_broker_main(int argc, char **argv);
/* `profilectl produce`: JSONL file / generated events to Kafka (ctl_produce.c). */
int ctl_produce_main(int argc, char **argv);
/* `profilectl generate N`: generated events as JSONL on stdout (ctl_produce.c). */
int ctl_generate_main(int argc, char **argv);

/* `profilectl dump`: stored profiles as JSON lines or text (ctl_dump.c). */
int ctl_dump_main(int argc, char **argv);
/* `profilectl days`: day column families with estimated keys/bytes (ctl_dump.c). */
int ctl_days_main(int argc, char **argv);
/* `profilectl offsets`: committed checkpoint of each partition (ctl_dump.c). */
int ctl_offsets_main(int argc, char **argv);
/* `profilectl schema`: a store's, a file's or the built-in schema in canonical JSON (ctl_dump.c). */
int ctl_schema_main(int argc, char **argv);
/* `profilectl consume`: a topic's records with headers as JSON lines (ctl_consume.c). */
int ctl_consume_main(int argc, char **argv);

/* `profilectl backup`, `restore`, `backups`: store backups (ctl_backup.c). */
int ctl_backup_main(int argc, char **argv);
int ctl_restore_main(int argc, char **argv);
int ctl_backups_main(int argc, char **argv);
/* `profilectl export --at DAY`: point-in-time profiles as JSON lines (ctl_export.c). */
int ctl_export_main(int argc, char **argv);
/* `profilectl import`: a new store from archived events (ctl_import.c). */
int ctl_import_main(int argc, char **argv);

#endif
