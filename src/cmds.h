/*
 * cmds.h - entry points of the hsmesh subcommands, dispatched by main.c.
 * Each returns the process exit status (0 success, 1 failure, 2 usage).
 * argv[0] is the subcommand name ("ca", "keyholder", ...).
 */
#ifndef HSM_CMDS_H
#define HSM_CMDS_H

int ca_main(int argc, char **argv);		/* src/ca/: init, issue, token, serve, revoke */
int keyholder_main(int argc, char **argv);	/* src/keyholder.c */
int inspect_main(int argc, char **argv);	/* src/inspect.c */
int demo_main(int argc, char **argv);		/* src/demo.c */
int agent_main(int argc, char **argv);		/* src/agent/main.c: the node agent (and "agent client") */
int app_main(int argc, char **argv);		/* src/app/: the demo's HTTP app (serve, get) */
int proxy_main(int argc, char **argv);		/* src/proxy/main.c: the sidecar */

#endif
