#!/bin/sh
printf 'Status: 200 OK\r\n\r\nno type'
