-- Plots of experiment results through gnuplot: learning curves (the mean
-- over runs at each epoch, with a confidence band) and final-metric point
-- plots (the mean with an interval per configuration), each written as a
-- data file and a gnuplot script, then drawn to PNG and SVG.  Without
-- gnuplot the data and the script are still written, and the result
-- says so.  Runs inside the d2r module: `...` is the module table.
local d2r = ...

local plot = {gnuplot = "gnuplot"}
d2r.plot = plot

-- Line colours, one per curve or series (cycled).
local PALETTE = {
  "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
  "#f0e442", "#000000",
}

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A gnuplot string literal (single quotes, doubled inside).
local function gq(s)
  return "'" .. tostring(s):gsub("'", "''") .. "'"
end

local function num(x)
  if x ~= x then return "NaN" end
  return ("%.10g"):format(x)
end

-- "a=1 b=x" for the columns by of keys; only the values ("1 x") when
-- short is set.
local function label_of(keys, by, short)
  local parts = {}
  for _, col in ipairs(by) do
    local v = tostring(keys[col])
    parts[#parts + 1] = short and v or ("%s=%s"):format(col, v)
  end
  return #parts > 0 and table.concat(parts, short and ", " or " ")
         or "all"
end

-- The centre and band of the values xs: the mean and, by band, a
-- bootstrap interval ("ci"), one standard error ("sem") or one standard
-- deviation ("std") either side, or none.
local function centre_band(xs, opts)
  local s = d2r.stats
  local m = s.mean(xs)
  local band = opts.band or "ci"
  if band == "ci" then
    local lo, hi = s.bootstrap_ci(xs, {level = opts.level,
                                  samples = opts.samples or 1000,
                                  seed = opts.seed})
    return m, lo, hi
  elseif band == "sem" or band == "std" then
    local d = #xs > 1 and s[band](xs) or 0
    return m, m - d, m + d
  elseif band == "none" then
    return m, m, m
  end
  error(("plot: band must be \"ci\", \"sem\", \"std\" or \"none\", got "
         .. "'%s'"):format(tostring(band)), 3)
end

local function has_gnuplot(cmd)
  if not cmd then return false end
  local ok = os.execute("command -v " .. shell_quote(cmd)
                        .. " >/dev/null 2>&1")
  return ok == true
end

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then error("plot: " .. err, 0) end
  f:write(text)
  f:close()
end

-- Writes data and script, then runs gnuplot; returns the result table.
local function render(opts, data, body)
  local out = opts.out
  if type(out) ~= "string" or out == "" then
    error("plot: option 'out' (the path prefix of the files) is needed", 3)
  end
  local dir = out:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then d2r.mkdir(dir) end
  local dat, gp = out .. ".dat", out .. ".gp"
  local formats = opts.formats or {"png", "svg"}
  local w, h = opts.width or 800, opts.height or 500
  local lines = {
    "# Drawn by d2r: gnuplot " .. gp,
    "set termoption noenhanced",
    "set key below",
    "set grid",
  }
  if opts.title then lines[#lines + 1] = "set title " .. gq(opts.title) end
  lines[#lines + 1] = "set xlabel " .. gq(opts.xlabel or "")
  lines[#lines + 1] = "set ylabel " .. gq(opts.ylabel or "")
  for _, l in ipairs(body.setup or {}) do lines[#lines + 1] = l end
  local files = {}
  for i, fmt in ipairs(formats) do
    local term
    if fmt == "png" then
      term = ("pngcairo size %d,%d noenhanced"):format(w, h)
    elseif fmt == "svg" then
      term = ("svg size %d,%d dynamic noenhanced"):format(w, h)
    elseif fmt == "pdf" then
      term = ("pdfcairo size %g,%g noenhanced"):format(w / 100, h / 100)
    else
      error(("plot: unknown format '%s' (png, svg, pdf)"):format(fmt), 3)
    end
    files[#files + 1] = out .. "." .. fmt
    lines[#lines + 1] = "set terminal " .. term
    lines[#lines + 1] = "set output " .. gq(files[#files])
    lines[#lines + 1] = i == 1 and body.plot:gsub("DATA", function()
      return gq(dat)
    end) or "replot"
  end
  lines[#lines + 1] = "set output"
  write_file(dat, data)
  write_file(gp, table.concat(lines, "\n") .. "\n")
  local res = {data = dat, script = gp, files = files}
  local cmd = opts.gnuplot
  if cmd == nil then cmd = plot.gnuplot end
  if not has_gnuplot(cmd) then
    res.drawn = false
    res.message = ("gnuplot not found: wrote %s and %s (run gnuplot on "
                   .. "the script to draw them)"):format(dat, gp)
    return res
  end
  local p = io.popen(shell_quote(cmd) .. " " .. shell_quote(gp) .. " 2>&1")
  local text = p:read("a")
  local ok = p:close()
  res.drawn = ok == true
  if res.drawn then
    res.message = "wrote " .. table.concat(files, " and ")
  else
    res.message = ("gnuplot failed on %s: %s"):format(gp, text)
  end
  return res
end

local function columns(by)
  if type(by) == "string" then return {by} end
  return by or {}
end

-- d2r.plot.curves(rows, opts): learning curves.  rows are metric rows
-- (as from a store's :metrics); each group of the columns in opts.by is
-- one curve: the mean of opts.y (default "value") over the rows at each
-- opts.x (default "epoch"), with a band (opts.band: "ci" (95% bootstrap
-- of the mean, default), "sem", "std" or "none").  opts.out is the path
-- prefix: OUT.dat, OUT.gp, OUT.png and OUT.svg are written.  Other
-- options: title, xlabel, ylabel, formats, width, height, level,
-- samples, seed, gnuplot (a command, or false for none).  Returns
-- {data, script, files, drawn, message}.
function plot.curves(rows, opts)
  opts = opts or {}
  local by = columns(opts.by)
  local xcol, ycol = opts.x or "epoch", opts.y or "value"
  local blocks, clauses = {}, {}
  for k, g in ipairs(d2r.stats.group(rows, by)) do
    local at, xs = {}, {}
    for _, row in ipairs(g.rows) do
      local x, y = row[xcol], row[ycol]
      if type(x) == "number" and type(y) == "number" and y == y then
        if not at[x] then
          at[x] = {}
          xs[#xs + 1] = x
        end
        at[x][#at[x] + 1] = y
      end
    end
    table.sort(xs)
    local label = label_of(g.keys, by)
    local lines = {"# " .. label}
    for _, x in ipairs(xs) do
      local m, lo, hi = centre_band(at[x], opts)
      lines[#lines + 1] = ("%s %s %s %s %d"):format(num(x), num(m), num(lo),
                                                   num(hi), #at[x])
    end
    blocks[#blocks + 1] = table.concat(lines, "\n")
    local colour = PALETTE[(k - 1) % #PALETTE + 1]
    if (opts.band or "ci") ~= "none" then
      clauses[#clauses + 1] = ("DATA index %d using 1:3:4 with "
        .. "filledcurves fillcolor rgb %s fillstyle transparent solid "
        .. "0.2 noborder notitle"):format(k - 1, gq(colour))
    end
    clauses[#clauses + 1] = ("DATA index %d using 1:2 with lines "
      .. "linewidth 2 linecolor rgb %s title %s"):format(k - 1, gq(colour),
      gq(label))
  end
  if #blocks == 0 then
    error("plot.curves: no rows with numbers in columns '" .. xcol
          .. "' and '" .. ycol .. "'", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.xlabel = opts.xlabel or xcol
  o.ylabel = opts.ylabel or ycol
  return render(o, table.concat(blocks, "\n\n\n") .. "\n",
                {plot = "plot " .. table.concat(clauses, ", \\\n     ")})
end

-- d2r.plot.points(rows, opts): final-metric point plots.  Each group of
-- the columns in opts.by is a position on the x axis with the mean of
-- opts.y (default "value") and an interval (opts.band as for curves;
-- "ci" by default); opts.series names a column whose values get one
-- colour each, side by side.  Other options as for curves.
function plot.points(rows, opts)
  opts = opts or {}
  local by, ycol = columns(opts.by), opts.y or "value"
  local series = opts.series
  local cats, cat_index = {}, {}
  for _, g in ipairs(d2r.stats.group(rows, by)) do
    local label = label_of(g.keys, by, true)
    cats[#cats + 1] = label
    cat_index[label] = #cats
  end
  local groups = d2r.stats.group(rows, series and {series} or {})
  local blocks, clauses, ns = {}, {}, #groups
  for s, sg in ipairs(groups) do
    local lines = {"# " .. (series and tostring(sg.keys[series]) or ycol)}
    for _, g in ipairs(d2r.stats.group(sg.rows, by)) do
      local ys = {}
      for _, row in ipairs(g.rows) do
        local y = row[ycol]
        if type(y) == "number" and y == y then ys[#ys + 1] = y end
      end
      if #ys > 0 then
        local m, lo, hi = centre_band(ys, opts)
        local x = cat_index[label_of(g.keys, by, true)]
                  + (s - (ns + 1) / 2) * 0.8 / math.max(ns, 1)
        lines[#lines + 1] = ("%s %s %s %s %d"):format(num(x), num(m),
                            num(lo), num(hi), #ys)
      end
    end
    blocks[#blocks + 1] = table.concat(lines, "\n")
    local colour = PALETTE[(s - 1) % #PALETTE + 1]
    clauses[#clauses + 1] = ("DATA index %d using 1:2:3:4 with yerrorbars "
      .. "pointtype 7 pointsize 1.2 linewidth 1.5 linecolor rgb %s "
      .. "%s"):format(s - 1, gq(colour), series
      and "title " .. gq(series .. "=" .. tostring(sg.keys[series]))
      or "notitle")
  end
  if #cats == 0 then error("plot.points: no rows", 2) end
  local tics, width = {}, 0
  for i, c in ipairs(cats) do
    tics[i] = ("%s %d"):format(gq(c), i)
    width = width + #c + 2
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.xlabel = opts.xlabel or table.concat(by, ", ")
  o.ylabel = opts.ylabel or ycol
  local setup = {
    ("set xrange [0.5:%g]"):format(#cats + 0.5),
    "set xtics (" .. table.concat(tics, ", ") .. ")"
      .. (width > 60 and " rotate by -30" or ""),
  }
  return render(o, table.concat(blocks, "\n\n\n") .. "\n",
                {setup = setup,
                 plot = "plot " .. table.concat(clauses, ", \\\n     ")})
end

-- The gnuplot terminal of a format, as render sets it.
local function scatter_terminal(fmt, w, h)
  if fmt == "png" then
    return ("pngcairo size %d,%d noenhanced"):format(w, h)
  elseif fmt == "svg" then
    return ("svg size %d,%d dynamic noenhanced"):format(w, h)
  elseif fmt == "pdf" then
    return ("pdfcairo size %g,%g noenhanced"):format(w / 100, h / 100)
  end
  error(("plot: unknown format '%s' (png, svg, pdf)"):format(fmt), 3)
end

-- d2r.plot.scatter(rows, opts): scatter plots, in one panel or in a grid
-- of panels.  rows hold points in columns opts.x and opts.y ("x" and "y"
-- by default); each group of the columns in opts.by is a series, with one
-- colour in every panel (opts.colours maps a series label, its values
-- joined by ", ", to a colour; opts.sizes to a point size, opts.pointsize
-- (0.5) otherwise).  Each group of the columns in opts.panel is a panel,
-- in group order, laid out row by row on opts.layout = {rows, columns}
-- (by default as square as it goes).  Panels share their axis ranges:
-- opts.xrange and opts.yrange ({lo, hi}), else those of all the points.
-- The key is drawn once, below the grid.  Other options as for curves.
-- Returns {data, script, files, drawn, message}.
function plot.scatter(rows, opts)
  opts = opts or {}
  local by, pby = columns(opts.by), columns(opts.panel)
  local xcol, ycol = opts.x or "x", opts.y or "y"
  local colour_of, size_of = {}, {}
  local xlo, xhi, ylo, yhi = math.huge, -math.huge, math.huge, -math.huge
  for k, g in ipairs(d2r.stats.group(rows, by)) do
    local label = label_of(g.keys, by, true)
    colour_of[label] = opts.colours and opts.colours[label]
                       or PALETTE[(k - 1) % #PALETTE + 1]
    size_of[label] = opts.sizes and opts.sizes[label]
                     or opts.pointsize or 0.5
    for _, row in ipairs(g.rows) do
      local x, y = row[xcol], row[ycol]
      if type(x) == "number" and type(y) == "number" then
        xlo, xhi = math.min(xlo, x), math.max(xhi, x)
        ylo, yhi = math.min(ylo, y), math.max(yhi, y)
      end
    end
  end
  if xlo > xhi then
    error("plot.scatter: no rows with numbers in columns '" .. xcol
          .. "' and '" .. ycol .. "'", 2)
  end
  local function range(given, lo, hi)
    if given then return given[1], given[2] end
    local pad = (hi - lo) * 0.05
    if pad == 0 then pad = 0.5 end
    return lo - pad, hi + pad
  end
  xlo, xhi = range(opts.xrange, xlo, xhi)
  ylo, yhi = range(opts.yrange, ylo, yhi)
  local panels = d2r.stats.group(rows, pby)
  local np = #panels
  local nr, nc
  if opts.layout then
    nr, nc = opts.layout[1], opts.layout[2]
  else
    nc = math.ceil(math.sqrt(np))
    nr = math.ceil(np / nc)
  end
  if nr * nc < np then
    error(("plot.scatter: a %dx%d layout cannot hold %d panels")
          :format(nr, nc, np), 2)
  end
  local blocks, titled, index, cmds = {}, {}, 0, {}
  for p, pg in ipairs(panels) do
    local clauses = {}
    for _, sg in ipairs(d2r.stats.group(pg.rows, by)) do
      local label = label_of(sg.keys, by, true)
      local lines = {("# %s / %s"):format(label_of(pg.keys, pby), label)}
      for _, row in ipairs(sg.rows) do
        local x, y = row[xcol], row[ycol]
        if type(x) == "number" and type(y) == "number" then
          lines[#lines + 1] = num(x) .. " " .. num(y)
        end
      end
      if #lines > 1 then
        blocks[#blocks + 1] = table.concat(lines, "\n")
        local title = "notitle"
        if not titled[label] and #by > 0 then
          titled[label] = true
          titled[#titled + 1] = label
          if np <= 1 then title = "title " .. gq(label) end
        end
        clauses[#clauses + 1] = ("DATA index %d using 1:2 with points "
          .. "pointtype 7 pointsize %g linecolor rgb %s %s"):format(index,
          size_of[label], gq(colour_of[label]), title)
        index = index + 1
      end
    end
    local cmd = {}
    if np > 1 then
      cmd[#cmd + 1] = "set title " .. gq(label_of(pg.keys, pby))
      local row, col = (p - 1) // nc, (p - 1) % nc
      local bottom = row == nr - 1 or p + nc > np
      cmd[#cmd + 1] = "set xlabel "
        .. gq(bottom and (opts.xlabel or xcol) or "")
      cmd[#cmd + 1] = "set ylabel "
        .. gq(col == 0 and (opts.ylabel or ycol) or "")
      cmd[#cmd + 1] = "unset key"
    end
    cmd[#cmd + 1] = #clauses > 0
      and "plot " .. table.concat(clauses, ", \\\n     ")
      or "plot NaN notitle"
    cmds[#cmds + 1] = table.concat(cmd, "\n")
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local setup = {
    ("set xrange [%s:%s]"):format(num(xlo), num(xhi)),
    ("set yrange [%s:%s]"):format(num(ylo), num(yhi)),
  }
  if np <= 1 then
    o.xlabel = opts.xlabel or xcol
    o.ylabel = opts.ylabel or ycol
    return render(o, table.concat(blocks, "\n\n\n") .. "\n",
                  {setup = setup, plot = cmds[1]})
  end
  -- A grid is drawn once per format: gnuplot's replot would repeat only
  -- its last panel.
  local formats = opts.formats or {"png", "svg"}
  local w, h = opts.width or 300 * nc, opts.height or 260 * nr + 40
  -- The key, once for the grid: labels with their point at the bottom of
  -- the canvas, set for the first panel only (about 8.5 pixels a
  -- character).
  local key, width = {}, 0
  for _, label in ipairs(titled) do width = width + (#label + 5) * 8.5 end
  local at = 0.5 - width / 2 / w
  for i, label in ipairs(titled) do
    key[#key + 1] = ("set label %d %s at screen %.4f, 0.025 left point "
      .. "pointtype 7 pointsize %g linecolor rgb %s offset character 1, 0")
      :format(i, gq(label), at, math.max(size_of[label], 0.8),
      gq(colour_of[label]))
    at = at + (#label + 5) * 8.5 / w
  end
  if #key > 0 then
    cmds[1] = table.concat(key, "\n") .. "\n" .. cmds[1] .. "\nunset label"
  end
  local grid = {
    ("set multiplot layout %d,%d%s margins 0.06,0.98,%g,0.92 spacing "
     .. "0.04,0.1"):format(nr, nc, opts.title and " title "
     .. gq(opts.title) or "", 95 / h),
    table.concat(cmds, "\n"),
    "unset multiplot",
  }
  grid = table.concat(grid, "\n")
  local body = {grid}
  local extra = {}
  for i = 2, #formats do
    extra[#extra + 1] = opts.out .. "." .. formats[i]
    body[#body + 1] = "set terminal " .. scatter_terminal(formats[i], w, h)
    body[#body + 1] = "set output " .. gq(extra[#extra])
    body[#body + 1] = grid
  end
  o.title, o.xlabel, o.ylabel = nil, "", ""
  o.formats, o.width, o.height = {formats[1]}, w, h
  local res = render(o, table.concat(blocks, "\n\n\n") .. "\n",
                     {setup = setup, plot = table.concat(body, "\n")})
  for _, f in ipairs(extra) do res.files[#res.files + 1] = f end
  if res.drawn then
    res.message = "wrote " .. table.concat(res.files, " and ")
  end
  return res
end
