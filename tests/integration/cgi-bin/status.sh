#!/bin/sh
printf 'Status: 201 Made It\r\nContent-Type: text/plain\r\nX-Script: sh\r\n\r\ncreated\n'
