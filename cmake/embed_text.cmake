# Writes a C header defining the text of the file IN as the string
# constant NAME, so the binary needs no data file at run time.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" esc "${hex}")
# Split the escaped text into lines of bounded length.
string(REGEX REPLACE "((\\\\x[0-9a-f][0-9a-f]){16})" "\\1\"\n  \"" esc
       "${esc}")
get_filename_component(src ${IN} NAME)
file(WRITE ${OUT}
  "/* Generated from ${src} by cmake/embed_text.cmake. */\n"
  "static const char ${NAME}[] =\n  \"${esc}\";\n")
