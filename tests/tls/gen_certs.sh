#!/bin/sh
# Generates the TLS test certificates into directory $1 with the openssl command line tool: a
# CA, a server certificate for localhost and 127.0.0.1, a client certificate (CN=device-42), the
# same client key with a certificate that expired in 2020, a client certificate from another
# CA, a client certificate with no CN whose identity is its first SAN, and a second server
# certificate from the other CA (for reload tests).
set -eu
d=$1
mkdir -p "$d"
cd "$d"
req() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null; }
sign() { # name ca days [extfile]
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
        -days "$3" ${4:+-extfile "$4"} 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=test-ca 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other-ca.key -out other-ca.pem -days 30 \
    -subj /CN=other-ca 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
req server /CN=localhost
sign server ca 30 server.ext
req server2 /CN=localhost-reloaded
sign server2 other-ca 30 server.ext
req client /CN=device-42
sign client ca 30
printf 'subjectAltName=DNS:sensor-7.example\n' > san.ext
req san /O=streamgate-tests
sign san ca 30 san.ext
# The other CA's client certificate reuses the good client's key.
openssl x509 -req -in client.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial \
    -out stranger.pem -days 30 2>/dev/null
# An expired certificate: `openssl ca` takes explicit start and end dates.
mkdir -p ca-db
: > ca-db/index.txt
echo 01 > ca-db/serial
printf '[ca]\ndefault_ca=t\n[t]\ndatabase=ca-db/index.txt\nnew_certs_dir=ca-db\nserial=ca-db/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' > ca.cnf
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in client.csr -out expired.pem \
    -startdate 20200101000000Z -enddate 20200201000000Z 2>/dev/null
# Both CAs, for a client that talks to the server before and after its certificate is rotated.
cat ca.pem other-ca.pem > both-ca.pem
