-- wrk script for scenario overload: count the responses by status code.
-- Each wrk thread counts in its own Lua state; done() adds the threads' counts up and prints
-- one line "statuses: 200=N 503=M ..." that bench/harness/wrk.py parses.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         total[status] = (total[status] or 0) + count
      end
   end
   local codes = {}
   for status in pairs(total) do
      table.insert(codes, status)
   end
   table.sort(codes)
   local parts = {}
   for _, status in ipairs(codes) do
      table.insert(parts, status .. "=" .. total[status])
   end
   io.write("statuses: " .. table.concat(parts, " ") .. "\n")
end
