/*
 * curl_client: libcurl alone sending the benchmark's requests, nothing else.
 *
 *   curl_client URL BODY_FILE HEADERS_FILE N CONCURRENCY
 *
 * Sends N POSTs of BODY_FILE with the headers of HEADERS_FILE (one
 * "Name: value" a line; a header "webhook-id" gets the request's number so
 * that each request differs, as the worker's do) to URL, CONCURRENCY at a
 * time over kept-alive connections, with the multi interface driven the way
 * the worker's transport drives it (curl_multi_socket_action on an epoll
 * set, reused easy handles).  Prints "requests seconds" and exits 0 when
 * every request got a 2xx.
 *
 * bench/worker_bench.sh runs it next to the worker to show what a
 * libcurl-based sender can reach on this machine with no database work at
 * all: an upper bound for any worker built on libcurl.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

typedef struct Client
{
	CURLM	   *multi;
	int			epfd;
	long		timeout_ms;		/* -1: none asked */
} Client;

static char *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0)
	{
		perror(path);
		exit(2);
	}
	rewind(f);
	buf = malloc(n + 1);
	if (buf == NULL || fread(buf, 1, n, f) != (size_t) n)
	{
		perror(path);
		exit(2);
	}
	buf[n] = '\0';
	fclose(f);
	*len = n;
	return buf;
}

static size_t
discard(char *ptr, size_t size, size_t n, void *arg)
{
	(void) ptr;
	(void) arg;
	return size * n;
}

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	Client	   *c = arg;
	struct epoll_event ev = {0};

	(void) easy;
	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
		curl_multi_assign(c->multi, fd, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = fd;
	if (sockp == NULL)
	{
		epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
		curl_multi_assign(c->multi, fd, c);
	}
	else
		epoll_ctl(c->epfd, EPOLL_CTL_MOD, fd, &ev);
	return 0;
}

static int
on_timer(CURLM *multi, long timeout_ms, void *arg)
{
	(void) multi;
	((Client *) arg)->timeout_ms = timeout_ms;
	return 0;
}

/* the request's headers: the file's, with this request's webhook-id */
static struct curl_slist *
headers_for(char **lines, int nlines, long n)
{
	struct curl_slist *h = NULL;
	char		buf[128];
	int			i;

	for (i = 0; i < nlines; i++)
	{
		if (strncmp(lines[i], "webhook-id:", 11) == 0)
		{
			snprintf(buf, sizeof(buf), "webhook-id: msg_%032ld", n);
			h = curl_slist_append(h, buf);
		}
		else
			h = curl_slist_append(h, lines[i]);
	}
	return h;
}

int
main(int argc, char **argv)
{
	Client		c = {0};
	size_t		body_len,
				hdr_len;
	char	   *body,
			   *hdr_text,
			  **lines;
	int			nlines = 0;
	long		n,
				conc,
				started = 0,
				done = 0,
				failed = 0;
	int			running;
	struct timespec t0,
				t1;
	char	   *save = NULL;
	char	   *line;

	if (argc != 6)
	{
		fprintf(stderr, "usage: %s URL BODY_FILE HEADERS_FILE N CONCURRENCY\n", argv[0]);
		return 2;
	}
	body = slurp(argv[2], &body_len);
	hdr_text = slurp(argv[3], &hdr_len);
	lines = calloc(hdr_len + 1, sizeof(char *));
	for (line = strtok_r(hdr_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		lines[nlines++] = line;
	n = atol(argv[4]);
	conc = atol(argv[5]);
	if (n <= 0 || conc <= 0)
		return 2;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	c.multi = curl_multi_init();
	c.epfd = epoll_create1(EPOLL_CLOEXEC);
	c.timeout_ms = -1;
	curl_multi_setopt(c.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c.multi, CURLMOPT_SOCKETDATA, &c);
	curl_multi_setopt(c.multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(c.multi, CURLMOPT_TIMERDATA, &c);
	curl_multi_setopt(c.multi, CURLMOPT_MAXCONNECTS, conc);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (; started < conc && started < n; started++)
	{
		CURL	   *e = curl_easy_init();
		struct curl_slist *h = headers_for(lines, nlines, started);

		curl_easy_setopt(e, CURLOPT_URL, argv[1]);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e, CURLOPT_PRIVATE, (char *) h);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_PROXY, "");
		curl_multi_add_handle(c.multi, e);
	}
	while (done < n)
	{
		struct epoll_event ev[64];
		int			k,
					i,
					left;
		CURLMsg    *msg;

		k = epoll_wait(c.epfd, ev, 64, c.timeout_ms < 0 ? 1000 : (int) c.timeout_ms);
		if (k < 0 && errno != EINTR)
		{
			perror("epoll_wait");
			return 2;
		}
		if (k <= 0)
			curl_multi_socket_action(c.multi, CURL_SOCKET_TIMEOUT, 0, &running);
		for (i = 0; i < k; i++)
			curl_multi_socket_action(c.multi, ev[i].data.fd,
									 (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
									 (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
									 (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0),
									 &running);
		while ((msg = curl_multi_info_read(c.multi, &left)) != NULL)
		{
			CURL	   *e = msg->easy_handle;
			struct curl_slist *h = NULL;
			long		code = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
			if (msg->data.result != CURLE_OK || code < 200 || code > 299)
				failed++;
			curl_multi_remove_handle(c.multi, e);
			curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &h);
			curl_slist_free_all(h);
			done++;
			if (started < n)
			{
				h = headers_for(lines, nlines, started++);
				curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
				curl_easy_setopt(e, CURLOPT_PRIVATE, (char *) h);
				curl_multi_add_handle(c.multi, e);
			}
			else
				curl_easy_cleanup(e);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%ld %.3f\n", n, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (failed > 0)
	{
		fprintf(stderr, "curl_client: %ld of %ld requests failed\n", failed, n);
		return 1;
	}
	curl_multi_cleanup(c.multi);
	curl_global_cleanup();
	return 0;
}
