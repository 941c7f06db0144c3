/* The concentrator's settings (settings.c): the option table and loading. */
#ifndef CONC_SETTINGS_H
#define CONC_SETTINGS_H

#include "concentrator.h"
#include "optable.h"

#include <stdbool.h>
#include <stddef.h>

#define CONC_VERSION "0.1.0"

extern const struct optable conc_optable;

/* Defaults, then the config file, then the command line, then checks that
 * span settings. Used at start and again for each reload, into a fresh cfg
 * (with its own policy) that is either adopted or freed. 0 or -errno after
 * printing every error. */
int conc_load_settings(int argc, char **argv, struct conc_config *cfg);

/* The settings that differ between the running cur and a reloaded n but
 * take effect only at a restart, ", "-separated into buf ("" = none). */
void conc_restart_changes(const struct conc_config *cur, const struct conc_config *n,
			  bool listen_inherited, char *buf, size_t len);

#endif
