#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Bad: a\rSet-Cookie: evil=1\r\n\r\nbody'
