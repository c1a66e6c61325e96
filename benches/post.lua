-- wrk script for the "post" workload (benches/run.py): every request POSTs
-- a 64 KiB body, which benches.apps:post reads whole from wsgi.input.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
