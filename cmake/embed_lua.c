/*
 * Build-time helper: writes the C header that embeds the Lua side of the
 * d2r module (bindings/lua/NAME.lua) in the binding, each file both as
 * text and as Lua bytecode compiled here, with debug information kept so
 * that tracebacks name the same files and lines.  Loading bytecode
 * skips the parser, most of a d2r process's start; the text stays for a
 * Lua core that refuses the bytecode (see run_chunks in ld2r.c).
 *
 *   embed_lua OUT.h FILE.lua...
 *
 * The chunks are written in the order given; a file that does not
 * compile fails the build with Lua's message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

/* A growing byte buffer for lua_dump. */
typedef struct {
  unsigned char *data;
  size_t n, cap;
} bytes;

static int collect(lua_State *L, const void *p, size_t sz, void *ud) {
  bytes *b = ud;
  (void)L;
  if (b->n + sz > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + sz) cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (data == NULL) return 1;
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->n, p, sz);
  b->n += sz;
  return 0;
}

/* The file name without its folder and its .lua ending. */
static void base_name(const char *path, char *out, size_t size) {
  const char *slash = strrchr(path, '/');
  const char *start = slash ? slash + 1 : path;
  size_t len = strlen(start);
  if (len > 4 && strcmp(start + len - 4, ".lua") == 0) len -= 4;
  if (len >= size) len = size - 1;
  memcpy(out, start, len);
  out[len] = '\0';
}

/* Writes n bytes as a C array initialiser body, 16 to a line. */
static void write_bytes(FILE *out, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    fprintf(out, "%s%u,", i % 16 == 0 ? "\n  " : "", p[i]);
  fputs("\n", out);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: embed_lua OUT.h FILE.lua...\n", stderr);
    return 2;
  }
  lua_State *L = luaL_newstate();
  FILE *out = fopen(argv[1], "w");
  if (L == NULL || out == NULL) {
    fprintf(stderr, "embed_lua: cannot write %s\n", argv[1]);
    return 1;
  }
  fputs("/* Generated from bindings/lua by cmake/embed_lua.c. */\n", out);
  for (int i = 2; i < argc; i++) {
    char name[256], chunk[300];
    bytes text = {0}, code = {0};
    FILE *in = fopen(argv[i], "rb");
    int c;
    if (in == NULL) {
      fprintf(stderr, "embed_lua: cannot read %s\n", argv[i]);
      return 1;
    }
    while ((c = getc(in)) != EOF) {
      unsigned char ch = (unsigned char)c;
      if (collect(L, &ch, 1, &text) != 0) return 1;
    }
    fclose(in);
    base_name(argv[i], name, sizeof name);
    snprintf(chunk, sizeof chunk, "@d2r/%s.lua", name);
    if (luaL_loadbufferx(L, (const char *)text.data, text.n, chunk, "t") !=
        LUA_OK) {
      fprintf(stderr, "embed_lua: %s\n", lua_tostring(L, -1));
      return 1;
    }
    if (lua_dump(L, collect, &code, 0) != 0) {
      fprintf(stderr, "embed_lua: cannot dump %s\n", argv[i]);
      return 1;
    }
    lua_pop(L, 1);
    fprintf(out, "static const unsigned char d2r_lua_text_%d[] = {", i - 2);
    write_bytes(out, text.data, text.n);
    fprintf(out, "};\nstatic const unsigned char d2r_lua_code_%d[] = {",
            i - 2);
    write_bytes(out, code.data, code.n);
    fputs("};\n", out);
    free(text.data);
    free(code.data);
  }
  fputs("static const struct {\n  const char *name;\n"
        "  const unsigned char *text, *code;\n  size_t ntext, ncode;\n"
        "} d2r_lua_chunks[] = {\n", out);
  for (int i = 2; i < argc; i++) {
    char name[256];
    base_name(argv[i], name, sizeof name);
    fprintf(out, "  {\"%s\", d2r_lua_text_%d, d2r_lua_code_%d,\n"
            "   sizeof d2r_lua_text_%d, sizeof d2r_lua_code_%d},\n", name,
            i - 2, i - 2, i - 2, i - 2);
  }
  fputs("  {0, 0, 0, 0, 0}\n};\n", out);
  lua_close(L);
  if (fclose(out) != 0) {
    fprintf(stderr, "embed_lua: cannot write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
