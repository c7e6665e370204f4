<?php
// The upload app of bench/membound.sh, bench/sizes.sh and bench/soak.sh: md5 and length of the request body,
// read in 64 KiB pieces (never all at once).
header('Content-Type: text/plain');
$in = fopen('php://input', 'rb');
$ctx = hash_init('md5');
$len = 0;
while (!feof($in)) {
    $d = fread($in, 65536);
    if ($d === false || $d === '') break;
    $len += strlen($d);
    hash_update($ctx, $d);
}
echo hash_final($ctx), ' ', $len, "\n";
