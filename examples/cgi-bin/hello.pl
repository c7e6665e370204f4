#!/usr/bin/perl
use strict;
use warnings;
print "Content-Type: text/plain\r\n\r\n";
print "Hello from Perl: $ENV{REQUEST_METHOD} $ENV{SCRIPT_NAME}\n";
