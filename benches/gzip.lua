-- wrk script for the "gzip" workload (benches/run.py): every request accepts
-- gzip, so the 100 KiB JSON answer goes out compressed.
wrk.headers["Accept-Encoding"] = "gzip"
