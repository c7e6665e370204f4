#!/usr/bin/perl
# 10 MiB of deterministic bytes: the lines "line N\n" padded to 32 bytes.
$| = 0;
print "Content-Type: text/plain\r\n\r\n";
for my $i (0 .. 10 * 1024 * 1024 / 32 - 1) {
    printf "%-31s\n", "line $i";
}
