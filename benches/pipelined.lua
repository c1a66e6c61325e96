-- wrk script for the "pipelined" workload (benches/run.py): every write sends
-- DEPTH hello GETs at once (DEPTH is the script's argument, 16 by default).
-- wrk counts the requests in `req` when it starts, then writes the next batch
-- only once its response parser has read that many responses, so a server
-- that answers only part of a batch stalls its connection instead of being
-- counted as fast.
init = function(args)
   local depth = tonumber(args[1]) or 16
   local batch = {}
   for i = 1, depth do
      batch[i] = wrk.format()
   end
   req = table.concat(batch)
end

request = function()
   return req
end
