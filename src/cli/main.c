/* vigil — entry point: dispatches to the subcommands in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "vigil — security gateway for medical devices\n"
    "\n"
    "Usage: vigil COMMAND [OPTIONS]\n"
    "\n"
    "Gateway:\n"
    "  init DIR                     create a data directory (CA, keys, database, admin token)\n"
    "  serve DIR                    run the gateway: MQTT/TLS for devices, HTTPS API\n"
    "  backup DIR OUT               online, consistent copy of DIR (without keys/kek)\n"
    "  restore OUT NEWDIR --kek F | --kek-p11 F\n"
    "                               a data directory again, from a backup and the KEK\n"
    "\n"
    "API clients (need -d DIR, --server/--token-file/--cacert, or `vigil login`):\n"
    "  patient add ID               register a patient\n"
    "  patient erase ID --reason R  crypto-shred a patient's readings (admin)\n"
    "  keys rotate-patient ID       a new data key for a patient's new readings\n"
    "  keys rotate-kek              a new key-encryption key, online (rewraps keys)\n"
    "  device enroll ID --out DIR   enroll a device; writes its certificate and key\n"
    "  device assign ID PATIENT     attach a device to a patient from now on\n"
    "  obs list PATIENT [--json]    show a patient's stored readings\n"
    "  audit verify DIR             verify the hash chain and signed checkpoints offline\n"
    "  audit list|report|export     read the audit trail (auditor or admin)\n"
    "  sim --devices N --rate R --for S\n"
    "                               enroll N simulated devices and stream vitals\n"
    "\n"
    "Accounts and access (docs/api.md):\n"
    "  login USER                   sign in (password and authenticator code); saves\n"
    "                               a session the other commands then use\n"
    "  logout                       end the session and delete it\n"
    "  passwd                       change your password\n"
    "  user add ID --role ROLE[,ROLE...] [--service]\n"
    "                               create an account (a person gets a QR code)\n"
    "  user list|disable|role|totp|cert\n"
    "                               list accounts, disable, set roles, new second\n"
    "                               factor, MQTT client certificate\n"
    "  token add PRINCIPAL --scope obs.read[,obs.subscribe]\n"
    "                               issue a service token; token revoke ID\n"
    "  careteam add|end|list        assign users to patients' care teams\n"
    "  breakglass PATIENT --reason TEXT\n"
    "                               emergency access to a patient (audited, alerts)\n"
    "\n"
    "Run `vigil COMMAND --help` for the options of one command.\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        puts("vigil 0.1.0");
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"init", vg_cli_init},       {"serve", vg_cli_serve}, {"patient", vg_cli_patient},
        {"device", vg_cli_device},   {"obs", vg_cli_obs},     {"sim", vg_cli_sim},
        {"audit", vg_cli_audit},     {"backup", vg_cli_backup}, {"keys", vg_cli_keys}, {"restore", vg_cli_restore},     {"login", vg_cli_login}, {"logout", vg_cli_logout},
        {"passwd", vg_cli_passwd},   {"user", vg_cli_user},   {"token", vg_cli_token},
        {"careteam", vg_cli_careteam}, {"breakglass", vg_cli_breakglass},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "vigil: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
