"""socket.getaddrinfo(NAME) as a Python service calls it (CPython calls glibc's getaddrinfo,
AF_UNSPEC): prints each address once, one a line. Exit status 0 found, 2 the name does not
resolve (EAI_NONAME), 1 any other failure (message on stderr). Run by the client matrix
(tests/integration/client_matrix.rs)."""

import socket
import sys

try:
    infos = socket.getaddrinfo(sys.argv[1], None, socket.AF_UNSPEC, socket.SOCK_STREAM)
except socket.gaierror as e:
    print(f"getaddrinfo {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(2 if e.errno == socket.EAI_NONAME else 1)
seen = []
for info in infos:
    addr = info[4][0]
    if addr not in seen:
        seen.append(addr)
        print(addr)
