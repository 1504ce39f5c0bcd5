"""A local S3 server for the s3 benchmark: moto's threaded server with one public bucket,
seeded with every zip under DIR (as data/spot/daily/klines/<SYMBOL>/1s/<file>, with a sha256
.CHECKSUM beside each). Prints the port, then serves until stdin closes.

    python serve.py DIR BUCKET
"""
import hashlib, json, os, sys

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

root, bucket = sys.argv[1], sys.argv[2]
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
s3 = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
s3.create_bucket(bucket, "us-east-1")
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
          "Action": ["s3:GetObject", "s3:ListBucket"],
          "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
s3.put_bucket_policy(bucket, json.dumps(policy).encode())
keys = []
for symbol in sorted(os.listdir(root)):
    d = os.path.join(root, symbol)
    if not os.path.isdir(d):
        continue
    for name in sorted(os.listdir(d)):
        data = open(os.path.join(d, name), "rb").read()
        key = f"data/spot/daily/klines/{symbol}/1s/{name}"
        s3.put_object(bucket, key, data)
        s3.put_object(bucket, key + ".CHECKSUM", f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode())
        keys.append(key)
with open(os.path.join(root, "keys.txt"), "w") as f:
    f.write("\n".join(keys) + "\n")
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
