/* getaddrinfo(NAME) as an application linked with musl calls it (AF_UNSPEC, so musl asks
 * A and AAAA in parallel): prints each address once, one a line. Exit status 0 found,
 * 2 the name does not resolve (EAI_NONAME), 1 any other failure (message on stderr).
 * Built static with musl-gcc by tests/integration/support/clients.rs. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 1;
    }
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo %s: %s\n", argv[1], gai_strerror(rc));
        return rc == EAI_NONAME ? 2 : 1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *addr = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (inet_ntop(ai->ai_family, addr, text, sizeof text))
            printf("%s\n", text);
    }
    freeaddrinfo(res);
    return 0;
}
