/*
 * Shell completion written from the command tables: `ferry help --completion bash|zsh`.
 * The build writes both scripts (Makefile, "completion"); `make install` puts them where
 * Debian's bash-completion and zsh look.
 *
 * One script body serves both shells. The tables become data (_ferry_verbs, _ferry_nouns,
 * _ferry_spec: each command's options and the kinds of its arguments) and one completer,
 * _ferry_complete, written in the part of the language bash and zsh share (zsh runs it with
 * ksharrays and shwordsplit, so arrays count from 0 and unquoted words split as in bash).
 * Each shell adds a few lines of glue. Names of teams, machines, tasks … come from the
 * store through `ferry list … --output json`, under a 2-second timeout, with the --config
 * the line gives; the envelope's rows sit at a fixed indentation, so sed finds their
 * members without jq. Only names of the characters ferry allows in names (letters, digits,
 * '.', '_', '-') are offered: bash's compgen -W expands the words it is given, and a row
 * written behind ferry's back must not run a command in the shell of whoever presses Tab.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_man.h"

/* Where the names of one kind of argument come from: a list command and a member of its
 * rows. $team is the team the line names (an earlier argument or --team). */
static const struct name_source {
    const char *kind, *verb, *noun, *extra, *key;
} name_sources[] = {
    {"team", "list", "teams", "", "teamName"},
    {"region", "list", "regions", "", "regionName"},
    {"bridge", "list", "bridges", "", "bridgeName"},
    {"machine", "list", "team-machines", " ${team:+\"$team\"}", "machineName"},
    {"storage", "list", "team-storages", " ${team:+\"$team\"}", "storageName"},
    {"schedule", "list", "team-schedules", " ${team:+\"$team\"}", "scheduleName"},
    {"group", "list", "team-machine-groups", " ${team:+\"$team\"}", "groupName"},
    {"user", "list", "users", "", "userName"},
    {"token", "list", "tokens", "", "tokenId"},
    {"task", "list", "queue", " --max-records 100", "taskId"},
    {"function", "functions", NULL, "", "name"},
};

#define N_SOURCES (sizeof(name_sources) / sizeof(name_sources[0]))

/* Argument placeholders that say their kind whatever the command. */
static const struct {
    const char *placeholder, *kind;
} placeholder_kinds[] = {
    {"TEAM", "team"},         {"REGION", "region"}, {"BRIDGE", "bridge"}, {"MACHINE", "machine"},
    {"FUNCTION", "function"}, {"TASK", "task"},     {"USER", "user"},
};

/* NAME's kind follows the noun of the command (inspect machine-group, rm storage, update
 * machine-vault …), longest prefix first. */
static const struct {
    const char *noun_prefix, *kind;
} noun_kinds[] = {
    {"machine-group", "group"}, {"machine", "machine"}, {"team", "team"},
    {"bridge", "bridge"},       {"region", "region"},   {"storage", "storage"},
    {"schedule", "schedule"},   {"user", "user"},       {"token", "token"},
};

/* Options whose value is a name of some kind, by the option's name. */
static const struct {
    const char *option, *kind;
} option_kinds[] = {
    {"team", "team"},         {"machine", "machine"}, {"bridge", "bridge"},
    {"region", "region"},     {"storage", "storage"}, {"user", "user"},
    {"function", "function"}, {"after", "task"},      {"task-id", "task"},
};

/* The kind of a positional argument (its placeholder without brackets); "-" for none. */
static const char *arg_kind(const cli_command *cmd, const char *placeholder)
{
    for (size_t i = 0; i < sizeof(placeholder_kinds) / sizeof(placeholder_kinds[0]); i++)
        if (strcmp(placeholder, placeholder_kinds[i].placeholder) == 0)
            return placeholder_kinds[i].kind;
    if (strcmp(placeholder, "NAME") != 0 && strcmp(placeholder, "ID") != 0)
        return "-";
    if (strcmp(cmd->verb, "create") == 0) /* a new name: nothing to offer */
        return "-";
    if (cmd->noun == NULL)
        return strcmp(cmd->verb, "functions") == 0 ? "function" : "-";
    for (size_t i = 0; i < sizeof(noun_kinds) / sizeof(noun_kinds[0]); i++)
        if (strncmp(cmd->noun, noun_kinds[i].noun_prefix, strlen(noun_kinds[i].noun_prefix)) == 0)
            return noun_kinds[i].kind;
    return "-";
}

/* What an option's value completes to: a kind, "@file", its alternatives ("text|json"), or
 * "-" for a value with nothing to offer. */
static const char *opt_kind(const cli_opt *o)
{
    int alternatives = strchr(o->arg, '|') != NULL;
    for (const char *p = o->arg; *p && alternatives; p++)
        alternatives = islower((unsigned char)*p) || *p == '|' || *p == '-';
    if (alternatives)
        return o->arg;
    if (strcmp(o->arg, "FILE") == 0 || strcmp(o->arg, "PATH") == 0)
        return "@file";
    for (size_t i = 0; i < sizeof(option_kinds) / sizeof(option_kinds[0]); i++)
        if (strcmp(o->name, option_kinds[i].option) == 0)
            return option_kinds[i].kind;
    return "-";
}

/* The verbs, once each in help's order (at most max); returns how many. */
static size_t collect_verbs(const cli_command *const *tables, size_t n_tables, const char **verbs,
                            size_t max)
{
    size_t n_verbs = 0;
    for (size_t t = 0; t < n_tables; t++)
        for (const cli_command *cmd = tables[t]; cmd->verb; cmd++) {
            size_t v = 0;
            while (v < n_verbs && strcmp(verbs[v], cmd->verb) != 0)
                v++;
            if (v == n_verbs && n_verbs < max)
                verbs[n_verbs++] = cmd->verb;
        }
    return n_verbs;
}

static void emit_verbs_and_nouns(FILE *out, const cli_command *const *tables, size_t n_tables)
{
    const char *verbs[256];
    size_t n_verbs = collect_verbs(tables, n_tables, verbs, sizeof(verbs) / sizeof(verbs[0]));
    fputs("_ferry_verbs='", out);
    for (size_t v = 0; v < n_verbs; v++)
        fprintf(out, "%s%s", v ? " " : "", verbs[v]);
    fputs("'\n\n# _ferry_nouns VERB: sets _ferry_n to the second words VERB takes.\n"
          "_ferry_nouns()\n{\n    case $1 in\n",
          out);
    for (size_t v = 0; v < n_verbs; v++) {
        int any = 0;
        for (size_t t = 0; t < n_tables; t++)
            for (const cli_command *cmd = tables[t]; cmd->verb; cmd++)
                if (cmd->noun && strcmp(cmd->verb, verbs[v]) == 0) {
                    if (any++)
                        fprintf(out, " %s", cmd->noun);
                    else
                        fprintf(out, "    %s) _ferry_n='%s", verbs[v], cmd->noun);
                }
        if (any)
            fputs("' ;;\n", out);
    }
    fputs("    *) _ferry_n= ;;\n    esac\n}\n\n", out);
}

/* Writes the kinds of a command's positional arguments: "team machine bridge"; an optional
 * one ("[TEAM]") as "%team". */
static void emit_arg_kinds(FILE *out, const cli_command *cmd)
{
    if (cmd->args == NULL)
        return;
    const char *p = cmd->args;
    int first = 1;
    while (*p) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        size_t len = strcspn(p, " ");
        char word[64];
        snprintf(word, sizeof(word), "%.*s", (int)len, p);
        p += len;
        int optional = word[0] == '[';
        char *bare = word + optional;
        bare[strcspn(bare, "]")] = '\0';
        fprintf(out, "%s%s%s", first ? "" : " ", optional ? "%" : "", arg_kind(cmd, bare));
        first = 0;
    }
}

static void emit_option(FILE *out, const char *prefix, const char *name, const cli_opt *o)
{
    fprintf(out, " %s%s", prefix, name);
    if (o->arg)
        fprintf(out, "=%s", opt_kind(o));
}

static void emit_specs(FILE *out, const cli_command *const *tables, size_t n_tables)
{
    fputs("# _ferry_spec 'VERB NOUN' (or VERB): sets _ferry_o to its options (--name, or\n"
          "# --name=KIND when it takes a value) and _ferry_a to the kinds of its arguments; 1\n"
          "# when there is no such command.\n"
          "_ferry_spec()\n{\n    case $1 in\n",
          out);
    for (size_t t = 0; t < n_tables; t++)
        for (const cli_command *cmd = tables[t]; cmd->verb; cmd++) {
            fprintf(out, "    '%s%s%s') _ferry_o='", cmd->verb, cmd->noun ? " " : "",
                    cmd->noun ? cmd->noun : "");
            for (const cli_opt *o = cmd->opts; o && o->name; o++) {
                emit_option(out, "--", o->name, o);
                if (o->short_name) {
                    char shortname[2] = {o->short_name, '\0'};
                    emit_option(out, "-", shortname, o);
                }
            }
            fputs("' _ferry_a='", out);
            emit_arg_kinds(out, cmd);
            fputs("' ;;\n", out);
        }
    fputs("    *) return 1 ;;\n    esac\n}\n\n", out);
}

static void emit_name_sources(FILE *out)
{
    fputs("# _ferry_names KIND: sets _ferry_r to the names of that kind in the store.\n"
          "_ferry_names()\n{\n    local key\n    local -a cmd\n    case $1 in\n",
          out);
    for (size_t i = 0; i < N_SOURCES; i++) {
        const struct name_source *s = &name_sources[i];
        if (cli_find_command(s->verb, s->noun) == NULL)
            continue; /* a list command that is gone offers nothing rather than an error */
        fprintf(out, "    %s) cmd=(%s%s%s%s) key=%s ;;\n", s->kind, s->verb, s->noun ? " " : "",
                s->noun ? s->noun : "", s->extra, s->key);
    }
    fputs("    *) _ferry_r=; return 0 ;;\n    esac\n"
          "    _ferry_r=$(timeout 2 \"$_ferry_bin\" \"${_ferry_global[@]}\" \"${cmd[@]}\" "
          "--output json 2>/dev/null |\n"
          "        sed -n \"s/^      \\\"$key\\\": "
          "\\\"\\{0,1\\}\\([A-Za-z0-9._-]*\\)\\\"\\{0,1\\},\\{0,1\\}$/\\1/p\")\n"
          "}\n\n",
          out);
}

/* The completer both shells run (see the comment at the top). */
static const char completer[] =
    "# _ferry_optkind OPTION: sets _ferry_k to the kind of its value; 1 for a flag or an\n"
    "# option the command does not have.\n"
    "_ferry_optkind()\n{\n"
    "    local o\n"
    "    for o in $_ferry_o; do\n"
    "        if [[ $o == \"$1=\"* ]]; then\n"
    "            _ferry_k=${o#*=}\n"
    "            return 0\n"
    "        fi\n"
    "    done\n"
    "    return 1\n}\n\n"
    "# _ferry_value KIND: sets _ferry_r (words) or _ferry_rk=file.\n"
    "_ferry_value()\n{\n"
    "    case $1 in\n"
    "    @file) _ferry_rk=file ;;\n"
    "    -) _ferry_r= ;;\n"
    "    *'|'*) _ferry_r=${1//\\|/ } ;;\n"
    "    *) _ferry_names \"$1\" ;;\n"
    "    esac\n}\n\n"
    "# _ferry_complete CWORD: completes word CWORD of _ferry_w (the line's words, the\n"
    "# program first) into _ferry_r, or sets _ferry_rk=file for a file name.\n"
    "_ferry_complete()\n{\n"
    "    local cword=$1 w verb= cmd= team= i n k others\n"
    "    local cur=${_ferry_w[cword]} prev=${_ferry_w[cword - 1]}\n"
    "    local _ferry_n= _ferry_o= _ferry_a= _ferry_k= _ferry_bin=${_ferry_w[0]}\n"
    "    local -a _ferry_global pos kinds\n"
    "    _ferry_global=() pos=() kinds=()\n"
    "    _ferry_r= _ferry_rk=words\n"
    "    for ((i = 1; i < cword; i++)); do\n"
    "        w=${_ferry_w[i]}\n"
    "        case $w in\n"
    "        -c | --config) i=$((i + 1)) && _ferry_global=(--config \"${_ferry_w[i]}\") && "
    "continue ;;\n"
    "        --config=*) _ferry_global=(\"$w\") && continue ;;\n"
    "        -o | --output) i=$((i + 1)) && continue ;;\n"
    "        -?*)\n"
    "            if [[ $w != *=* ]] && _ferry_optkind \"$w\"; then\n"
    "                i=$((i + 1))\n"
    "                [[ $w == --team ]] && team=${_ferry_w[i]}\n"
    "            fi\n"
    "            continue\n"
    "            ;;\n"
    "        esac\n"
    "        if [[ -z $verb ]]; then\n"
    "            verb=$w\n"
    "            _ferry_nouns \"$verb\"\n"
    "            if [[ -z $_ferry_n ]]; then\n"
    "                _ferry_spec \"$verb\" || return 0\n"
    "                cmd=$verb\n"
    "            fi\n"
    "        elif [[ -z $cmd ]]; then\n"
    "            if _ferry_spec \"$verb $w\"; then\n"
    "                cmd=\"$verb $w\"\n"
    "            elif _ferry_spec \"$verb\"; then\n"
    "                cmd=$verb\n"
    "                pos+=(\"$w\")\n"
    "            else\n"
    "                return 0\n"
    "            fi\n"
    "        else\n"
    "            pos+=(\"$w\")\n"
    "        fi\n"
    "    done\n"
    "    case $prev in\n"
    "    -c | --config) _ferry_rk=file && return 0 ;;\n"
    "    -o | --output) _ferry_r='text json' && return 0 ;;\n"
    "    esac\n"
    "    if [[ -n $cmd && $prev == -?* && $prev != *=* ]] && _ferry_optkind \"$prev\"; then\n"
    "        _ferry_value \"$_ferry_k\"\n"
    "        return 0\n"
    "    fi\n"
    "    if [[ $cur == -* ]]; then\n"
    "        _ferry_r=$_ferry_globals\n"
    "        for w in $_ferry_o; do\n"
    "            _ferry_r=\"$_ferry_r ${w%%=*}\"\n"
    "        done\n"
    "        return 0\n"
    "    fi\n"
    "    if [[ -z $verb ]]; then\n"
    "        _ferry_r=$_ferry_verbs\n"
    "        return 0\n"
    "    fi\n"
    "    if [[ -z $cmd ]]; then\n"
    "        _ferry_r=$_ferry_n\n"
    "        _ferry_spec \"$verb\" || return 0\n" /* a verb that is also a command */
    "        return 0\n"
    "    fi\n"
    "    kinds=($_ferry_a)\n"
    "    n=${#pos[@]}\n"
    "    for ((i = 0; i < n && i < ${#kinds[@]}; i++)); do\n"
    "        [[ ${kinds[i]} == team || ${kinds[i]} == %team ]] && team=${pos[i]}\n"
    "    done\n"
    "    ((n < ${#kinds[@]})) || return 0\n"
    "    k=${kinds[n]}\n"
    "    # [TEAM] NAME: the first word is a team or, alone, a name of any team.\n"
    "    if [[ $k == %* && n -eq 0 && ${#kinds[@]} -gt 1 ]]; then\n"
    "        _ferry_names \"${k#%}\"\n"
    "        others=$_ferry_r\n"
    "        _ferry_value \"${kinds[1]}\"\n"
    "        _ferry_r=\"$others $_ferry_r\"\n"
    "        return 0\n"
    "    fi\n"
    "    _ferry_value \"${k#%}\"\n"
    "}\n\n";

static const char bash_glue[] =
    "_ferry()\n{\n"
    "    local _ferry_r _ferry_rk cur=${COMP_WORDS[COMP_CWORD]}\n"
    "    local -a _ferry_w=(\"${COMP_WORDS[@]}\")\n"
    "    _ferry_complete \"$COMP_CWORD\"\n"
    "    if [[ $_ferry_rk == file ]]; then\n"
    "        compopt -o filenames 2>/dev/null\n"
    "        mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n"
    "    else\n"
    "        mapfile -t COMPREPLY < <(compgen -W \"$_ferry_r\" -- \"$cur\")\n"
    "    fi\n"
    "}\n"
    "complete -F _ferry ferry\n";

static const char zsh_glue[] = "_ferry_zsh()\n{\n"
                               "    setopt localoptions ksharrays shwordsplit\n"
                               "    local -a _ferry_w\n"
                               "    _ferry_w=(\"${words[@]}\")\n"
                               "    _ferry_complete $((CURRENT - 1))\n"
                               "}\n\n"
                               "_ferry()\n{\n"
                               "    local _ferry_r _ferry_rk\n"
                               "    _ferry_zsh\n"
                               "    if [[ $_ferry_rk == file ]]; then\n"
                               "        _files\n"
                               "    else\n"
                               "        compadd -- ${=_ferry_r}\n"
                               "    fi\n"
                               "}\n\n"
                               "_ferry \"$@\"\n";

int cli_write_completion(const char *shell, FILE *out)
{
    int zsh = strcmp(shell, "zsh") == 0;
    if (!zsh && strcmp(shell, "bash") != 0) {
        fprintf(stderr, "ferry: help --completion takes bash or zsh, not '%s'\n", shell);
        return EXIT_USAGE;
    }
    size_t n_tables;
    const cli_command *const *tables = cli_command_tables(&n_tables);
    fprintf(out,
            "%s# %s completion for ferry(1). Generated by `ferry help --completion %s` from "
            "ferry's command\n# tables; do not edit.\n\n",
            zsh ? "#compdef ferry\n" : "", zsh ? "zsh" : "bash", shell);
    fputs("_ferry_globals='", out);
    for (const cli_opt *o = cli_global_opts; o->name; o++)
        fprintf(out, "%s-%c --%s", o == cli_global_opts ? "" : " ", o->short_name, o->name);
    fputs("'\n", out);
    emit_verbs_and_nouns(out, tables, n_tables);
    emit_specs(out, tables, n_tables);
    emit_name_sources(out);
    fputs(completer, out);
    fputs(zsh ? zsh_glue : bash_glue, out);
    return EXIT_OK;
}
