<?php
// bench/longpoll.sh: the readiness check (holds nothing, records nothing).
echo "ok\n";
