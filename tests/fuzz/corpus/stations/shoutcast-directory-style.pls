[playlist]
numberofentries=2
File1=http://198.51.100.7:8000/
Title1=(#1 - 12/500) Station Name
Length1=-1
File2=http://198.51.100.8:80/;stream.mp3
Title2=(#2 - 40/500) Station Name
Length2=-1
Version=2
