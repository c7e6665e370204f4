#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nindex of sub'
