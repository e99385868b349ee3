# Writes a C header holding each Lua file of FILES as a string constant, in
# the order given, so the module needs no Lua files at run time.
set(body "/* Generated from bindings/lua by cmake/embed_lua.cmake. */\n")
string(APPEND body "static const struct { const char *name; const char *code; }\n")
string(APPEND body "d2r_lua_chunks[] = {\n")
list(SORT FILES)
foreach(f IN LISTS FILES)
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" esc "${hex}")
  # Split the escaped text into lines of bounded length.
  string(REGEX REPLACE "((\\\\x[0-9a-f][0-9a-f]){32})" "\\1\"\n  \"" esc
         "${esc}")
  string(APPEND body "  {\"${name}\",\n  \"${esc}\"},\n")
endforeach()
string(APPEND body "  {0, 0}\n};\n")
file(WRITE ${OUT} "${body}")
