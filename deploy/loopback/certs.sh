#!/bin/sh
# Makes the loopback walkthrough's certificates in ./certs: a CA, one
# certificate for the grid nodes and primesim (127.0.0.1), and the
# gateway's client certificate towards Prime. Needs openssl.
set -eu
cd "$(dirname "$0")"
mkdir -p certs
cd certs
days=30
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
	-subj "/CN=gridmesh loopback CA" -keyout ca.key -out ca.crt 2>/dev/null
issue() { # name, subjectAltName
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n' "$2" > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
		-extfile "$1.ext" -out "$1.crt" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
issue node IP:127.0.0.1
issue gateway-client DNS:gateway.gridmesh.local
printf 'loopback-grid-secret\n' > grid-secret
printf 'loopback-api-key\n' > api-key
printf 'loopback-ops-token\n' > ops-token
chmod 600 *.key grid-secret api-key ops-token
echo "certificates and secrets in $(pwd)"
