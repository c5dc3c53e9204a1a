#!/usr/bin/env python3
"""A tiny Docker registry token server (bearer flow) for the image-service tests. Stdlib only; JWTs
are signed RS256 by `openssl dgst -sha256 -sign KEY`.

usage: token_server.py --key KEY.pem [--listen 127.0.0.1:5003] [--service cocoon-registry]
                       [--issuer cocoon-token-server] [--user cocoon] [--password s3cret]

  GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]   with HTTP Basic credentials
  POST /token (form: grant_type=password, username, password, service, scope)  OAuth2 variant
    -> 200 {"token", "access_token", "expires_in": 300, "issued_at"} granting every requested action
    -> 401 when the credentials are missing or wrong, 400 for another service
The JWT header carries `kid`: the libtrust key id of the public key, which docker registry 2.8
matches against the keys of the certificates in its `auth.token.rootcertbundle`.
Started and stopped by scripts/registry.
"""
import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import time
import urllib.parse

TTL = 300


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def libtrust_kid(der_public_key):
    """base32 of the first 240 bits of sha256(DER SubjectPublicKeyInfo), in ':'-joined 4-char groups."""
    s = base64.b32encode(hashlib.sha256(der_public_key).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def parse_scopes(values):
    """['repository:a/b:pull,push registry:catalog:*'] -> [{type, name, actions}] (names may hold ':')."""
    access = []
    for value in values:
        for scope in value.split():
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if typ and name:
                access.append({"type": typ, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args):
        host, port = args.listen.rsplit(":", 1)
        super().__init__((host, int(port)), Handler)
        self.args = args
        der = subprocess.run(["openssl", "pkey", "-in", args.key, "-pubout", "-outform", "DER"],
                             check=True, stdout=subprocess.PIPE).stdout
        self.kid = libtrust_kid(der)

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.args.key], check=True,
                             input=signing_input.encode(), stdout=subprocess.PIPE).stdout
        return signing_input + "." + b64url(sig)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "cocoon-token-server"

    def reply(self, code, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def basic_credentials(self):
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return None, None
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return user, password

    def issue(self, query, user, password):
        a = self.server.args
        if not (user is not None and hmac.compare_digest(user.encode(), a.user.encode())
                and hmac.compare_digest((password or "").encode(), a.password.encode())):
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad or missing credentials"}]},
                              [("WWW-Authenticate", 'Basic realm="%s"' % a.issuer)])
        service = query.get("service", [a.service])[0]
        if service != a.service:
            return self.reply(400, {"errors": [{"code": "DENIED", "message": "unknown service %r" % service}]})
        now = int(time.time())
        claims = {"iss": a.issuer, "sub": user, "aud": a.service, "iat": now, "nbf": now - 10,
                  "exp": now + TTL, "jti": os.urandom(12).hex(), "access": parse_scopes(query.get("scope", []))}
        token = self.server.sign(claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.reply(200, {"token": token, "access_token": token, "expires_in": TTL, "issued_at": issued})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        self.issue(urllib.parse.parse_qs(url.query), *self.basic_credentials())

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]})
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if form.get("grant_type", [""])[0] != "password":
            return self.reply(400, {"error": "unsupported_grant_type"})
        self.issue(form, form.get("username", [None])[0], form.get("password", [None])[0])

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--key", required=True, help="RSA private key (PEM)")
    ap.add_argument("--listen", default="127.0.0.1:5003")
    ap.add_argument("--service", default="cocoon-registry")
    ap.add_argument("--issuer", default="cocoon-token-server")
    ap.add_argument("--user", default="cocoon")
    ap.add_argument("--password", default="s3cret")
    srv = Server(ap.parse_args())
    sys.stderr.write("token server on http://%s/token, kid %s\n" % (srv.args.listen, srv.kid))
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
