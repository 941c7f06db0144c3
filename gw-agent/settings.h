/* The agent's settings (settings.c): the option table and loading. */
#ifndef AGENT_SETTINGS_H
#define AGENT_SETTINGS_H

#include "agent.h"
#include "optable.h"

extern const struct optable agent_optable;

/* Defaults, the config file, the command line, then checks that span
 * settings; at start and for each reload (into fresh structs). 0, or
 * -errno after printing every error. */
int agent_load_settings(int argc, char **argv, struct agent_config *cfg, struct paths *ps,
			struct agent_classes *cs);

#endif
