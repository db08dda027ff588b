from scheduler.entry import main

main()
