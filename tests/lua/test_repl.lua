-- Tests of the interactive session of the d2r executable, driven as a
-- person drives it: in a terminal made by tmux (send-keys, capture-pane).
-- Values shown without `=`, a trailing `;` that hides them, tensors and
-- models pretty-printed, continuation lines, errors that leave the
-- session alive, help, %time, Tab completion, Ctrl-C interrupting a long
-- computation (once or repeatedly) with every global kept, Ctrl-C
-- dropping a line, and the history file.  Skipped, saying so, when tmux
-- is missing.
local check = require "check"

local exe = arg[-1]
local i = -2
while arg[i] do
  exe, i = arg[i], i - 1
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

if not os.execute("command -v tmux >/dev/null 2>&1") then
  print("tmux is not installed (apt-get install tmux): skipping the " ..
        "terminal tests of the REPL")
  check.done("test_repl")
  return
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir " .. quote(dir)))
local socket = dir .. "/tmux"
local tmux = "tmux -S " .. quote(socket) .. " "

local function run(cmd)
  return os.execute(tmux .. cmd .. " >/dev/null 2>&1")
end

local function sleep(s)
  os.execute("sleep " .. s)
end

-- The whole pane, scrollback included, without trailing blank lines.
local function screen()
  local p = io.popen(tmux .. "capture-pane -p -J -S -3000 -t repl 2>&1")
  local text = p:read("a")
  p:close()
  return (text:gsub("%s+$", ""))
end

-- Waits until the pane's text matches pattern (plain text); returns the
-- text, or false and the text after timeout seconds.
local function wait_for(pattern, timeout)
  local text
  for _ = 1, (timeout or 10) * 20 do
    text = screen()
    if text:find(pattern, 1, true) then
      return text
    end
    sleep(0.05)
  end
  return false, text
end

-- Types text (literally; a trailing ';' is escaped from tmux's parser)
-- and presses Enter unless told not to.
local function type_line(text, no_enter)
  text = text:gsub(";$", "\\;")
  run("send-keys -t repl -l -- " .. quote(text))
  if not no_enter then
    run("send-keys -t repl Enter")
  end
end

local function key(name)
  run("send-keys -t repl " .. name)
end

-- Runs a line and checks that the pane then shows `want`.
local function expect(line, want, msg)
  if line then
    type_line(line)
  end
  local text, last = wait_for(want)
  check.ok(text, (msg or want) .. "\n--- the pane:\n" .. tostring(last))
  return text
end

-- The marker printed after each step, so that a later check does not
-- match the output of an earlier one.
local step = 0
local function mark()
  step = step + 1
  local m = "mark" .. step
  type_line("print('" .. m .. "' .. '!')")
  wait_for(m .. "!")
  return m .. "!"
end

-- The pane's text after the marker m.
local function after(m)
  local text = screen()
  local _, e = text:find(m, 1, true)
  return e and text:sub(e + 1) or text
end

-- The session, run as one function so that the terminal is cleaned up
-- whatever happens.
local function drive()
  assert(run("new-session -d -s repl -x 120 -y 50 " ..
             quote("env HOME=" .. quote(dir) .. " INPUTRC=/dev/null " ..
                   quote(exe))))
  run("set-option -t repl remain-on-exit on")

  expect(nil, "(Lua 5.4", "a banner")
  expect("1 + 2", "\n3", "an expression's value without =")
  type_line("x = d2r.tensor{{1, 2.5}, {3, 4}}")
  expect("x", "tensor([[1.0000, 2.5000],\n        [3.0000, 4.0000]], " ..
         "shape=[2, 2], dtype=float64)", "a tensor with its shape and dtype")

  local m = mark()
  type_line("x * 2;")
  type_line("y = 7;")
  expect("print('after quiet')", "after quiet")
  local text = after(m)
  check.ok(not text:find("tensor", 1, true),
           "a trailing ; hides the value: " .. text)
  expect("y", "\n7", "a statement with ; still runs")

  expect("for i = 1, 2 do", "\n>>", "a continuation prompt")
  type_line("print('i=' .. i)")
  expect("end", "i=1\ni=2", "the loop ran")

  expect("error('oops')", "stdin:1: oops", "an error is reported")
  expect("print('alive')", "\nalive", "the session survives the error")

  expect("help(d2r.zeros)", "A tensor of zeros or ones", "help of a function")
  expect("help(x)", "Methods (help(\"Tensor:name\")", "help of an object")
  expect("help('Tensor:sum')", "Reductions over one axis", "help of a name")

  expect("%time s = 0 for i = 1, 3e6 do s = s + i end",
         " s wall, ", "%time reports the time")
  expect("s", "4500001500000", "the timed statement ran")
  expect("%time 6 * 7", "\n42", "%time shows an expression's value")

  type_line("net = d2r.mlp(4, {8}, 3, d2r.rng(1))")
  expect("net", "layers 4 -> 8 -> 3, relu between layers", "a model")

  type_line("d2r.zeros_l", true)
  key("Tab")
  type_line("(x)")
  expect(nil, "> d2r.zeros_like(x)\ntensor([[0, 0],",
         "Tab completes a function name")
  type_line("x:nume", true)
  key("Tab")
  type_line("()")
  expect(nil, "> x:numel()\n4", "Tab completes a method")

  -- Ctrl-C stops a long computation; globals survive.
  type_line("keep = 41 + 1")
  m = mark()
  type_line("while true do local z = x * 2 end")
  sleep(1)
  key("C-c")
  expect(nil, "interrupted", "Ctrl-C interrupts a computation")
  expect("keep", "\n42", "a global survives the interrupt")
  expect("x:numel()", "\n4", "the tensor survives the interrupt")

  -- Pressed again and again, Ctrl-C never ends the session.
  m = mark()
  type_line("for k = 1, 1e12 do local z = x + k end")
  sleep(0.5)
  key("C-c")
  key("C-c")
  key("C-c")
  sleep(0.5)
  expect("keep + 1", "\n43", "the session outlives repeated Ctrl-C")

  -- Ctrl-C at the prompt drops the line being typed.
  m = mark()
  type_line("dropped line", true)
  sleep(0.3)
  key("C-c")
  sleep(0.3)
  expect("print('next')", "\nnext", "a new prompt after Ctrl-C")
  text = after(m)
  check.ok(not text:find("dropped line[^\n]*\n[^\n]*error"),
           "the dropped line did not run: " .. text)

  key("C-d")
  sleep(0.5)
  local f = io.open(dir .. "/.d2r_history")
  check.ok(f ~= nil, "a history file is written")
  if f then
    local hist = f:read("a")
    f:close()
    check.ok(hist:find("print('alive')", 1, true), "history holds lines")
    check.ok(hist:find("%time 6 * 7", 1, true), "and %time lines")
    check.ok(hist:find("for i = 1, 2 do\nprint", 1, true) or
             hist:find("for i = 1, 2 do\\012print", 1, true),
             "and whole multi-line chunks: " .. hist)
    check.ok(not hist:find("dropped line", 1, true), "not dropped lines")
  end
end

local ok, err = pcall(drive)
run("kill-server")
os.execute("rm -rf " .. quote(dir))
if not ok then
  error(err, 0)
end
check.done("test_repl")
