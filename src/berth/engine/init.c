/*
 * berth-init: the init of a container started with `berth run --init`
 * (Docker's --init, tini's job). It is pid 1: it runs the command as its
 * child, forwards every signal it gets to that child, reaps every zombie
 * (orphans are reparented to pid 1), and exits with the child's status
 * (128+n if the child died of signal n).
 *
 * Built by the engine on first use (cc -static), bind-mounted read-only at
 * /sbin/docker-init, run as: docker-init -- COMMAND [ARG...]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--") == 0)
		first = 2;
	if (first >= argc) {
		fprintf(stderr, "berth-init: no command to run\n");
		return 2;
	}
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t child = fork();
	if (child < 0) {
		perror("berth-init: fork");
		return 1;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvp(argv[first], &argv[first]);
		fprintf(stderr, "berth-init: exec %s: %s\n", argv[first], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	for (;;) {
		siginfo_t info;
		struct timespec tick = {1, 0};
		int sig = sigtimedwait(&all, &info, &tick);
		if (sig > 0 && sig != SIGCHLD)
			kill(child, sig);
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (pid == child) {
				/* the command is done: reap what is left, then leave */
				while (waitpid(-1, NULL, WNOHANG) > 0)
					;
				if (WIFEXITED(status))
					return WEXITSTATUS(status);
				return 128 + WTERMSIG(status);
			}
		}
	}
}
