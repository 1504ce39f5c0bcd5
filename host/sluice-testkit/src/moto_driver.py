# The driver of sluice-testkit's MotoServer (host/sluice-testkit/src/s3.rs): moto's S3 server on
# 127.0.0.1 (a free port), one bucket, objects put and deleted through moto's backend in-process.
#
#   python moto_driver.py BUCKET [--public] [--auth]
#
# --public: a bucket policy allowing anonymous s3:GetObject and s3:ListBucket (moto refuses an
#           anonymous GET of an object otherwise).
# --auth:   INITIAL_NO_AUTH_ACTION_COUNT=0 (moto checks SigV4 signatures) and an IAM user with full
#           S3 access, whose keys are in the first line.
#
# First stdout line: {"port": P} (plus "access_key", "secret_key" with --auth), or {"error": ...}.
# Then one JSON command per stdin line, answered by one line: `ok` (put_*: `ok <etag>`) or
# `error <text>`. End of stdin (the test process gone) ends the driver at once.
import json
import os
import sys

if "--auth" in sys.argv:
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
try:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer
except ImportError as e:
    print(json.dumps({"error": "import", "detail": repr(e)}), flush=True)
    sys.exit(3)

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
_, port = server.get_host_and_port()
s3 = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
bucket = sys.argv[1]
s3.create_bucket(bucket, "us-east-1")
hello = {"port": port}
if "--public" in sys.argv:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    s3.put_bucket_policy(bucket, json.dumps(policy).encode())
if "--auth" in sys.argv:
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    iam.create_user("us-east-1", "sluice")
    key = iam.create_access_key("sluice")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    pol = iam.create_policy("", "/", json.dumps(doc), "sluice-s3-all", [])
    iam.attach_user_policy(pol.arn, "sluice")
    hello.update(access_key=key.access_key_id, secret_key=key.secret_access_key)
print(json.dumps(hello), flush=True)

for line in sys.stdin:
    if not line.strip():
        continue
    try:
        c = json.loads(line)
        op = c["op"]
        if op == "put_file":
            with open(c["path"], "rb") as f:
                reply = "ok " + s3.put_object(bucket, c["key"], f.read()).etag
        elif op == "put_bytes":
            reply = "ok " + s3.put_object(bucket, c["key"], bytes.fromhex(c["hex"])).etag
        elif op == "delete":
            s3.delete_object(bucket, c["key"])
            reply = "ok"
        elif op == "seed_many":
            prefix = c["prefix"]
            for i in range(c["n"]):
                s3.put_object(bucket, f"{prefix}{i:06d}.zip", b"x" * 10)
            reply = "ok"
        else:
            reply = f"error unknown op {op!r}"
    except Exception as e:  # noqa: BLE001 (every failure goes back to the test)
        reply = "error " + repr(e).replace("\n", " ")
    print(reply, flush=True)

# stdin closed: the test process is gone or done. Stopping the werkzeug server takes > 0.5 s.
os._exit(0)
